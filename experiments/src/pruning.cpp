#include <pnn/experiments/pruning.hpp>

#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/spec.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>

namespace pnn {

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

} // namespace

prune_options prune_options::parse(const std::string& text) {
  auto s = training::spec::parse(text, "--prune");
  prune_options o;
  o.rule = s.name;
  if (o.rule == "none") {
  } else if (o.rule == "halving") {
    const double eta = s.take_number("eta", 3);
    const double min_epochs = s.take_number("min_epochs", 1);
    if (!(eta >= 2 && eta <= 1000 && eta == std::floor(eta)))
      bad("--prune " + text + ": eta, expected a whole number 2..1000");
    if (!(min_epochs >= 1 && min_epochs <= 1000000 && min_epochs == std::floor(min_epochs)))
      bad("--prune " + text + ": min_epochs, expected a whole number of epochs 1..1000000");
    o.eta = static_cast<int64_t>(eta);
    o.min_epochs = static_cast<int64_t>(min_epochs);
  } else {
    bad("--prune " + text + ": '" + o.rule
        + "': expected none or halving[:eta=3,min_epochs=1]");
  }
  s.expect_consumed();
  return o;
}

std::vector<int64_t> prune_options::rungs(int64_t epochs) const {
  std::vector<int64_t> r;
  if (!enabled())
    return r;
  for (int64_t e = min_epochs; e < epochs; e *= eta)
    r.push_back(e);
  return r;
}

std::string prune_options::spec() const {
  if (!enabled())
    return rule;
  return rule + ":eta=" + std::to_string(eta) + ",min_epochs=" + std::to_string(min_epochs);
}

std::vector<uint32_t> asha_rule(const rung_view& view) {
  const size_t top = view.completed.size() / static_cast<size_t>(std::max<int64_t>(1, view.eta));
  std::vector<uint32_t> go_on;
  for (size_t i = 0; i < top && i < view.completed.size(); ++i)
    if (!view.completed[i].promoted)
      go_on.push_back(view.completed[i].config);
  return go_on;
}

namespace {

nlohmann::json to_json(const prune_event& e, const std::vector<std::string>& names) {
  nlohmann::json j{{"event", e.kind}};
  if (e.kind == "start") {
    j["settings"] = e.settings;
    return j;
  }
  j["config"] = e.config;
  if (e.config < names.size())
    j["name"] = names[e.config];
  j["epoch"] = e.epoch;
  if (e.kind == "rung" || e.kind == "stop")
    j["mean"] = training::number_or_null(e.mean);
  if (e.kind == "rung") {
    auto folds = nlohmann::json::array();
    for (double a : e.folds)
      folds.push_back(training::number_or_null(a));
    j["folds"] = folds;
  }
  return j;
}

double number_in(const nlohmann::json& j, const char* key) {
  auto i = j.find(key);
  return i != j.end() && i->is_number() ? i->get<double>() : std::nan("");
}

} // namespace

std::vector<prune_event> read_prune_journal(const std::filesystem::path& file) {
  std::vector<prune_event> events;
  const auto text = read_text_file(file);
  size_t at = 0;
  for (int line = 1; at < text.size(); ++line) {
    const auto end = text.find('\n', at);
    if (end == std::string::npos)
      break; // cut short by a crash: the decision it held was never acted on
    const auto piece = text.substr(at, end - at);
    at = end + 1;
    try {
      const auto j = nlohmann::json::parse(piece);
      prune_event e;
      e.kind = j.at("event").get<std::string>();
      if (e.kind == "start") {
        e.settings = j.at("settings").get<std::string>();
      } else if (e.kind == "rung" || e.kind == "promote" || e.kind == "stop") {
        e.config = j.at("config").get<uint32_t>();
        e.epoch = j.at("epoch").get<int64_t>();
        e.mean = number_in(j, "mean");
        if (j.contains("folds"))
          for (const auto& f : j.at("folds"))
            e.folds.push_back(f.is_number() ? f.get<double>() : std::nan(""));
      } else {
        throw std::runtime_error("unknown event '" + e.kind + "'");
      }
      events.push_back(std::move(e));
    } catch (const std::exception& ex) {
      throw pnn::error(error_code::malformed_file,
                       file.string() + " line " + std::to_string(line)
                         + ": not a pruning journal line (" + ex.what() + ")");
    }
  }
  return events;
}

successive_halving::successive_halving(setup s) : s_(std::move(s)) {
  if (!s_.rule)
    s_.rule = asha_rule;
  rungs_ = s_.options.rungs(s_.epochs);
  configs_.resize(s_.configs);
  completed_.resize(rungs_.size());
  apply_replay(s_.replay);
  if (events_.empty())
    events_.push_back({"start", 0, 0, std::nan(""), {}, settings()});
  if (!s_.journal.empty()) {
    // The journal as replayed, without a line a crash cut short (what follows must
    // start on a line of its own): a new journal is its start line.
    std::string lines;
    for (const auto& e : events_)
      lines += to_json(e, s_.names).dump() + "\n";
    write_file_atomic(s_.journal, lines);
  }
}

std::string successive_halving::settings() const {
  // The configurations by name, in order, as a hash: a journal's decisions belong to
  // the grid they were taken on (--lrs 0.01,0.001 is another grid than 0.001,0.01).
  uint64_t grid = 14695981039346656037ull; // FNV-1a
  for (const auto& name : s_.names)
    for (unsigned char ch : name + "\n")
      grid = (grid ^ ch) * 1099511628211ull;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(grid));
  return "rule=" + s_.options.spec() + ";configs=" + std::to_string(s_.configs)
    + ";folds=" + std::to_string(s_.folds) + ";epochs=" + std::to_string(s_.epochs)
    + ";grid=" + hex;
}

void successive_halving::log(prune_event e) {
  if (!s_.journal.empty()) {
    // After one failed append the journal may end in a torn line: nothing more
    // goes after it (--resume drops the torn line and decides again).
    if (broken_)
      throw pnn::error(error_code::io_error,
                       s_.journal.string() + ": an earlier append failed; not appending");
    try {
      append_line_durable(s_.journal, to_json(e, s_.names).dump() + "\n");
    } catch (...) {
      broken_ = true;
      throw;
    }
  }
  events_.push_back(std::move(e));
}

/// An earlier run's journal: its rung results and decisions stand.
void successive_halving::apply_replay(const std::vector<prune_event>& events) {
  if (events.empty())
    return;
  const auto where = s_.journal.empty() ? std::string{"the pruning journal"} : s_.journal.string();
  if (events.front().kind != "start")
    throw pnn::error(error_code::malformed_file, where + ": does not begin with its settings");
  if (events.front().settings != settings())
    throw pnn::error(error_code::invalid_argument,
                     "--resume: " + where + " was made with other settings ("
                       + events.front().settings + "; now " + settings()
                       + "): use another --out, or the settings it was run with");
  auto contradiction = [&](const prune_event& e, const char* what) {
    throw pnn::error(error_code::malformed_file,
                     where + ": " + e.kind + " of configuration " + std::to_string(e.config)
                       + " at epoch " + std::to_string(e.epoch) + ": " + what);
  };
  for (size_t i = 1; i < events.size(); ++i) {
    const auto& e = events[i];
    if (e.kind == "start")
      throw pnn::error(error_code::malformed_file,
                       where + " line " + std::to_string(i + 1) + ": a second start line");
    if (e.config >= configs_.size())
      contradiction(e, "no such configuration");
    auto& c = configs_[e.config];
    const auto rung = std::find(rungs_.begin(), rungs_.end(), e.epoch) - rungs_.begin();
    if (static_cast<size_t>(rung) >= rungs_.size())
      contradiction(e, "not a rung");
    const auto r = static_cast<size_t>(rung);
    if (e.kind == "rung") {
      if (c.level != r || c.stopped || completed_[r].count(e.config))
        contradiction(e, "out of order");
      if (e.folds.size() != static_cast<size_t>(s_.folds))
        contradiction(e, "not one accuracy per fold");
      for (size_t f = 0; f < e.folds.size(); ++f)
        c.folds[r][static_cast<int32_t>(f)] = e.folds[f];
      c.means[r] = e.mean;
      completed_[r][e.config] = e.mean;
    } else if (e.kind == "promote") {
      if (c.level != r || c.stopped || !completed_[r].count(e.config))
        contradiction(e, "out of order");
      ++c.level;
    } else if (e.kind == "stop") {
      if (c.level != r || c.stopped)
        contradiction(e, "out of order");
      c.stopped = true;
    }
    events_.push_back(e);
  }
  events_.insert(events_.begin(), events.front());
}

int64_t successive_halving::pause_at(const job_spec& job, int64_t) {
  const auto config = config_of_job(job.id, s_.folds);
  if (config >= configs_.size())
    return 0;
  const auto& c = configs_[config];
  return c.level < rungs_.size() ? rungs_[c.level] : 0;
}

pruning_decisions successive_halving::paused(const job_spec& job, const job_result& r) {
  pruning_decisions d;
  const auto config = config_of_job(job.id, s_.folds);
  if (config >= configs_.size()) {
    d.resume.push_back(job.id);
    return d;
  }
  auto& c = configs_[config];
  if (c.stopped) { // decided before (a replayed journal): it ends here
    d.stop.push_back(job.id);
    return d;
  }
  if (c.level >= rungs_.size() || r.epochs_done < rungs_[c.level]) {
    d.resume.push_back(job.id); // promoted since it was handed out
    return d;
  }
  if (r.epochs_done > rungs_[c.level]) {
    d.stop.push_back(job.id); // its checkpoint was past the rung: nothing to compare
    return d;
  }
  const size_t rung = c.level;
  c.parked.insert(job.id);
  c.folds[rung][job.fold] = r.val_accuracy;
  if (!completed_[rung].count(config) && c.folds[rung].size() == static_cast<size_t>(s_.folds)) {
    prune_event e{"rung", config, rungs_[rung], 0, {}, {}};
    for (const auto& [fold, acc] : c.folds[rung]) {
      e.folds.push_back(acc);
      e.mean += acc / static_cast<double>(s_.folds);
    }
    const double mean = e.mean;
    log(std::move(e)); // in the journal before it counts
    c.means[rung] = mean;
    completed_[rung][config] = mean;
  }
  if (completed_[rung].count(config))
    d = evaluate(rung, false);
  return d;
}

/// Asks the rule which configurations of rung `rung` go on now, and promotes them.
pruning_decisions successive_halving::evaluate(size_t rung, bool last_call) {
  rung_view view;
  view.index = rung;
  view.epoch = rungs_[rung];
  view.eta = s_.options.eta;
  view.configs = s_.configs;
  view.last_call = last_call;
  for (const auto& [config, mean] : completed_[rung])
    view.completed.push_back({config, mean, configs_[config].level > rung});
  // Best first; NaN (a fold without a figure) last; ties: the lower configuration.
  std::stable_sort(view.completed.begin(), view.completed.end(),
                   [](const rung_view::entry& a, const rung_view::entry& b) {
                     const bool an = std::isnan(a.mean), bn = std::isnan(b.mean);
                     if (an != bn)
                       return bn;
                     return !an && a.mean > b.mean;
                   });
  pruning_decisions d;
  for (auto config : s_.rule(view)) {
    if (config >= configs_.size() || !completed_[rung].count(config))
      continue;
    auto& c = configs_[config];
    if (c.level != rung || c.stopped)
      continue; // already on, or stopped: a decision is final
    promote(config, d);
  }
  return d;
}

void successive_halving::promote(uint32_t config, pruning_decisions& d) {
  auto& c = configs_[config];
  log({"promote", config, rungs_[c.level], std::nan(""), {}, {}});
  ++c.level;
  d.resume.insert(d.resume.end(), c.parked.begin(), c.parked.end());
  c.parked.clear();
}

void successive_halving::stop(uint32_t config, pruning_decisions& d) {
  auto& c = configs_[config];
  const auto mean = c.means.count(c.level) ? c.means[c.level] : std::nan("");
  log({"stop", config, rungs_[std::min(c.level, rungs_.size() - 1)], mean, {}, {}});
  c.stopped = true;
  d.stop.insert(d.stop.end(), c.parked.begin(), c.parked.end());
  c.parked.clear();
}

pruning_decisions successive_halving::stalled(const std::vector<uint32_t>& paused) {
  // The rule's last word on each rung, the highest first.
  for (size_t r = rungs_.size(); r-- > 0;) {
    if (completed_[r].empty())
      continue; // a rule is never asked about an empty rung
    auto d = evaluate(r, true);
    if (!d.resume.empty())
      return d;
  }
  pruning_decisions d;
  // No configuration trained to the end: the best of the highest rung does.
  const bool one_finished = std::any_of(configs_.begin(), configs_.end(), [&](const config_state& c) {
    return c.level >= rungs_.size() && !c.stopped;
  });
  if (!one_finished)
    for (size_t r = rungs_.size(); r-- > 0;) {
      std::optional<uint32_t> best;
      for (const auto& [config, mean] : completed_[r]) {
        const auto& c = configs_[config];
        if (c.level != r || c.stopped || c.parked.empty() || std::isnan(mean))
          continue;
        if (!best || mean > completed_[r][*best])
          best = config;
      }
      if (best) {
        promote(*best, d);
        return d;
      }
    }
  // The rest stops where it is.
  std::set<uint32_t> configs;
  for (auto id : paused)
    configs.insert(config_of_job(id, s_.folds));
  for (auto config : configs)
    if (config < configs_.size() && !configs_[config].stopped && !configs_[config].parked.empty())
      stop(config, d);
  return d;
}

} // namespace pnn
