#include <pnn/experiments/kfold.hpp>

#include <pnn/actors/cluster.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/actors/host_watcher.hpp>
#include <pnn/experiments/session.hpp>
#include <pnn/experiments/summary.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/node.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/interrupt.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/folders.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/schedules.hpp>
#include <pnn/training/tensorboard.hpp>
#include <pnn/system.hpp>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

std::string fold_name(int32_t fold) {
  return "fold" + std::to_string(fold);
}

const char* const pruning_journal_name = "pruning.jsonl";

/// A learning rate as configuration names and folders show it: 0.003, 1e-05.
std::string lr_text(double lr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", lr);
  return buf;
}

/// The configuration of job `id` (jobs are K per configuration, in grid order).
const kfold_config& config_of(const std::vector<kfold_config>& configs, uint32_t id,
                              int32_t folds) {
  return configs.at(config_of_job(id, folds));
}

/// A job's entry in summary.json's "jobs" (and its result.json); times relative to t0.
job_summary summary_of(const job_result& r, double t0, const kfold_config& config,
                       int64_t epochs) {
  nlohmann::json threads = nlohmann::json::array();
  for (size_t i = 0; i < r.thread_times.size() && i < r.thread_counts.size(); ++i)
    threads.push_back({{"at", r.thread_times[i] - t0}, {"threads", r.thread_counts[i]}});
  int32_t max_threads = 0;
  for (auto t : r.thread_counts)
    max_threads = std::max(max_threads, t);
  // An epoch not validated has NaN figures, which CAF 0.17 carries from a serve
  // node as -1: losses and accuracies are never negative, so both mean "none".
  auto measured = [](double v) { return v >= 0 ? number_or_null(v) : nlohmann::json(); };
  nlohmann::json epoch_list = nlohmann::json::array();
  for (size_t i = 0; i < r.epoch_val_accuracy.size(); ++i)
    epoch_list.push_back({{"epoch", i + 1},
                      {"train_loss", measured(r.epoch_train_loss[i])},
                      {"val_loss", measured(r.epoch_val_loss[i])},
                      {"val_accuracy", measured(r.epoch_val_accuracy[i])}});
  job_summary s;
  s.model = r.model;
  s.scheduler = r.scheduler;
  s.fold = r.fold;
  s.config = config.name;
  s.dir = (config.dir / fold_name(r.fold)).generic_string();
  s.host = r.host;
  s.slot = r.slot;
  s.ok = r.ok();
  s.error = r.error;
  s.val_accuracy = r.val_accuracy;
  s.val_loss = r.val_loss;
  s.train_loss = r.train_loss;
  s.started_at = r.started_at - t0;
  s.finished_at = r.finished_at - t0;
  s.more = {{"id", r.id},
            {"threads", r.thread_counts.empty() ? 1 : r.thread_counts.front()},
            {"max_threads", max_threads},
            {"threads_over_time", threads},
            {"seconds", r.finished_at - r.started_at},
            {"epochs_done", r.epochs_done},
            {"resumed_from_epoch", r.resumed_from_epoch},
            {"resumed_from_step", r.resumed_from_step},
            {"optimizer", config.optimizer},
            {"lr", config.lr},
            {"batch_size", config.batch_size},
            {"epochs", epoch_list}};
  // A job that paused at rungs (--prune): its earlier parts, and all the time it ran.
  nlohmann::json parts = nlohmann::json::array();
  double busy = r.finished_at - r.started_at;
  for (size_t i = 0; i + 1 < r.segments.size(); i += 2) {
    parts.push_back({r.segments[i] - t0, r.segments[i + 1] - t0});
    busy += r.segments[i + 1] - r.segments[i];
  }
  if (!parts.empty()) {
    s.more["segments"] = parts;
    s.more["seconds"] = busy; // every part, not only the last
  }
  s.more["busy_seconds"] = busy;
  if (r.ok() && r.epochs_done < epochs) {
    s.more["pruned"] = true;
    s.more["stopped_at_epoch"] = r.epochs_done;
  }
  return s;
}

namespace tb = training::tensorboard;

/// The grid as TensorBoard's HParams experiment, at the root of <out>/tb/ (each
/// job's session names its configuration as its group, so the table has a row per
/// configuration over its folds; the fold is in the run's name, not an hparam, as a
/// group shows the hparams of one of its sessions). A file that cannot be written
/// is a warning.
void write_tensorboard_experiment(const kfold_options& o, double t0) {
  std::vector<tb::hparam_info> grid{{"model", {}}, {"scheduler", {}},  {"optimizer", {}},
                                    {"lr", {}},    {"batch_size", {}}};
  auto add = [](tb::hparam_info& h, tb::hparam_value v) {
    if (std::find(h.values.begin(), h.values.end(), v) == h.values.end())
      h.values.push_back(std::move(v));
  };
  for (const auto& c : configurations(o)) {
    add(grid[0], c.model);
    add(grid[1], c.scheduler);
    add(grid[2], c.optimizer);
    add(grid[3], c.lr);
    add(grid[4], static_cast<double>(c.batch_size));
  }
  try {
    tb::event_file f{t0};
    f.experiment(grid, {"val/accuracy", "val/loss", "train/epoch_loss"}, t0);
    f.write(o.out / "tb");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn kfold: no TensorBoard experiment: %s\n", e.what());
  }
}

/// A job's TensorBoard run, <out>/tb/<its folder under --out>, written once the job
/// has ended, from the records in its folder (a job continued by --resume: all its
/// steps, from steps.bin). A file that cannot be written is a warning: the run's
/// results are elsewhere.
void store_tensorboard(const fs::path& out, const job_result& r, const job_spec& job,
                       const kfold_config& config) {
  const fs::path dir = job.out_dir;
  try {
    const auto metrics = nlohmann::json::parse(read_text_file(dir / "metrics.json"));
    tb::job_run run;
    for (const auto& s : metrics.at("steps"))
      run.steps.push_back(step_from_json(s));
    for (const auto& e : metrics.at("epochs"))
      run.epochs.push_back(epoch_from_json(e));
    run.clock_zero = r.clock_zero;
    run.finished_at = r.finished_at;
    run.samples_per_epoch =
      static_cast<double>(r.samples) / static_cast<double>(std::max<int64_t>(1, r.epochs_done));
    run.hparams = {{"model", job.model},
                   {"scheduler", job.scheduler},
                   {"optimizer", job.optimizer},
                   {"lr", job.lr},
                   {"batch_size", static_cast<double>(job.batch_size)}};
    run.group = config.name;
    tb::job_events(run).write(out / "tb" / config.dir / fold_name(job.fold));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn kfold: no TensorBoard events for %s: %s\n", dir.string().c_str(),
                 e.what());
  }
}

/// Writes a finished job's files into its folder: the record files a job on another
/// host sent along, and result.json (what --resume keeps).
void store_result(const job_result& r, double t0, const job_spec& job,
                  const kfold_config& config) {
  const fs::path dir = job.out_dir;
  for (const auto& name : write_record_files(dir, r.files.names, r.files.contents))
    std::fprintf(stderr, "pnn kfold: refused a record file named '%s' from %s\n", name.c_str(),
                 r.host.c_str());
  auto stored = to_json(summary_of(r, t0, config, job.epochs));
  stored["started_at_wall"] = r.started_at;
  stored["finished_at_wall"] = r.finished_at;
  stored["settings"] = job_settings(job); // what --resume checks before keeping it
  write_file_atomic(dir / "result.json", stored.dump(2) + "\n");
}

} // namespace

void validate(const kfold_options& o) {
  if (o.models.empty())
    bad("--models: expected at least one model");
  if (o.schedulers.empty())
    bad("--schedulers: expected at least one scheduler");
  for (const auto& m : o.models)
    if (!models::has_model(m))
      models::make_model(m, 1, 10); // throws the error listing valid names
  for (const auto& s : o.schedulers)
    schedule_options::parse(s);
  o.optimizer_group::validate();
  for (const auto& spec : o.optimizers) {
    optimizer_group one{spec, o.lr};
    one.validate();
  }
  for (double lr : o.lrs)
    if (!(lr > 0 && std::isfinite(lr)))
      bad("--lrs " + lr_text(lr) + ": expected learning rates > 0");
  for (auto b : o.batch_sizes)
    if (b < 1 || b > 1000000)
      bad("--batch-sizes " + std::to_string(b) + ": expected batch sizes 1..1000000");
  // Two configurations in one folder would overwrite each other's jobs.
  std::map<fs::path, std::string> dirs;
  for (const auto& c : configurations(o))
    if (auto [at, added] = dirs.emplace(c.dir, c.name); !added)
      bad("the grid has " + c.name + (at->second == c.name ? " twice" : " and " + at->second)
          + " (same folder " + c.dir.generic_string()
          + "): expected each value once in --models, --schedulers, --optimizers, --lrs and "
            "--batch-sizes");
  if (o.folds < 2 || o.folds > 1000)
    bad("--folds " + std::to_string(o.folds) + ": expected 2..1000");
  o.schedule_group::validate();
  o.cluster_group::validate();
  if (o.threads_per_job < 0 || o.threads_per_job > 1024)
    bad("--threads-per-job " + std::to_string(o.threads_per_job) + ": expected 1..1024");
  if (o.checkpoint_every < 0)
    bad("--checkpoint-every " + std::to_string(o.checkpoint_every) + ": expected 0 or more");
  if (o.validate_every < 0)
    bad("--validate-every " + std::to_string(o.validate_every)
        + ": expected 0 (after the last epoch only) or more epochs");
  for (const auto& s : o.schedulers)
    if (o.validate_every != 1 && schedule_options::parse(s).name == "plateau")
      bad("--validate-every " + std::to_string(o.validate_every) + ": the " + s
          + " schedule needs a validation loss after every epoch (expected 1)");
  const auto prune = prune_options::parse(o.prune);
  if (prune.enabled() && prune.rungs(o.epochs).empty())
    bad("--prune " + o.prune + ": min_epochs=" + std::to_string(prune.min_epochs)
        + " leaves no rung below --epochs " + std::to_string(o.epochs)
        + " (expected min_epochs < epochs)");
  if (o.pruning_rule && !prune.enabled())
    bad("--prune: a pruning rule was given but pruning is " + o.prune
        + " (expected halving, whose rungs the rule decides at)");
  if (!o.use_local && o.hosts.empty() && o.hosts_file.empty())
    bad("--no-local: expected --hosts h:p,... or --hosts-file FILE to run the jobs on");
  if (!o.hosts_file.empty()) {
    std::ifstream in(o.hosts_file);
    if (!in)
      bad("--hosts-file " + o.hosts_file.string() + ": cannot read file (one host:port per line)");
    if (o.serial)
      bad("--serial: compares against one job at a time on this host; drop --hosts-file");
  }
  if (!(o.rejoin_interval >= 0.1 && o.rejoin_interval <= 3600))
    bad("--rejoin-interval " + std::to_string(o.rejoin_interval) + ": expected 0.1..3600 seconds");
  if (!(o.wait_for_hosts >= 0))
    bad("--wait-for-hosts " + std::to_string(o.wait_for_hosts) + ": expected seconds >= 0");
  if (o.serial && !o.hosts.empty())
    bad("--serial: compares against one job at a time on this host; drop --hosts");
  o.output_group::validate();
}

/// The values a grid field takes: its list, or the one value when none is given.
template <class T>
std::vector<T> values_of(const std::vector<T>& list, const T& single) {
  return list.empty() ? std::vector<T>{single} : list;
}

std::vector<kfold_config> configurations(const kfold_options& o) {
  const auto optimizers = values_of(o.optimizers, o.optimizer);
  const auto lrs = values_of(o.lrs, o.lr);
  const auto batch_sizes = values_of(o.batch_sizes, o.batch_size);
  std::vector<kfold_config> configs;
  for (const auto& model : o.models)
    for (const auto& scheduler : o.schedulers)
      for (const auto& optimizer : optimizers)
        for (double lr : lrs)
          for (int64_t batch_size : batch_sizes) {
            kfold_config c;
            c.index = static_cast<uint32_t>(configs.size());
            c.model = model;
            c.scheduler = scheduler;
            c.optimizer = optimizer;
            c.lr = lr;
            c.batch_size = batch_size;
            c.name = model + "/" + scheduler;
            c.dir = fs::path(folder_name(model)) / folder_name(scheduler);
            auto add = [&c](const std::string& part) {
              c.name += "/" + part;
              c.dir /= folder_name(part);
            };
            if (optimizers.size() > 1)
              add(optimizer);
            if (lrs.size() > 1)
              add("lr=" + lr_text(lr));
            if (batch_sizes.size() > 1)
              add("bs=" + std::to_string(batch_size));
            configs.push_back(std::move(c));
          }
  return configs;
}

std::vector<job_spec> expand_jobs(const kfold_options& o) {
  std::vector<job_spec> jobs;
  uint32_t id = 0;
  for (const auto& c : configurations(o))
    for (int32_t fold = 0; fold < o.folds; ++fold) {
      job_spec j;
      j.id = id++;
      j.model = c.model;
      j.scheduler = c.scheduler;
      j.optimizer = c.optimizer;
      j.lr = c.lr;
      j.dataset = o.dataset;
      j.data_dir = o.data_dir;
      j.subset = o.subset;
      j.folds = o.folds;
      j.fold = fold;
      j.split_seed = o.split_seed;
      j.seed = o.seed;
      j.epochs = o.epochs;
      j.batch_size = c.batch_size;
      j.checkpoint_every = o.checkpoint_every;
      j.validate_every = o.validate_every;
      j.resume = o.resume;
      if (!o.out.empty())
        j.out_dir = (o.out / c.dir / fold_name(fold)).string();
      jobs.push_back(std::move(j));
    }
  return jobs;
}

std::string format_table(const kfold_report& report) {
  std::ostringstream out;
  size_t width = 17;
  auto name_of = [](const kfold_report::cell& c) {
    auto name = c.model + " / " + c.scheduler;
    const auto own = c.model + "/" + c.scheduler;
    // The grid fields that vary: "lenet5 / cosine / lr=0.01 / bs=64".
    for (size_t at = own.size(); at < c.config.name.size();) {
      const auto next = std::min(c.config.name.find('/', at + 1), c.config.name.size());
      name += " / " + c.config.name.substr(at + 1, next - at - 1);
      at = next;
    }
    return name;
  };
  for (const auto& c : report.table)
    width = std::max(width, name_of(c).size());
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s  %-17s  %s\n", static_cast<int>(width), "model / scheduler",
                "val accuracy", "folds");
  out << buf;
  for (const auto& c : report.table) {
    auto name = name_of(c);
    std::snprintf(buf, sizeof buf, "%-*s  %.4f ± %.4f    %d%s\n", static_cast<int>(width),
                  name.c_str(), c.mean, c.std, c.folds_ok,
                  c.pruned ? ("    pruned after epoch " + std::to_string(c.epochs_done)).c_str()
                           : "");
    out << buf;
  }
  return out.str();
}

namespace {

/// The host:port lines of a --hosts-file ('#' comments, blank lines skipped). A bad
/// line is reported once (in `reported`) and skipped: the file may be edited while
/// the run goes on.
std::vector<std::string> read_hosts_file(const fs::path& file, std::set<std::string>& reported) {
  std::vector<std::string> hosts;
  std::ifstream in(file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    auto hash = line.find('#');
    if (hash != std::string::npos)
      line.resize(hash);
    auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos)
      continue;
    line = line.substr(first, line.find_last_not_of(" \t\r") - first + 1);
    try {
      parse_host_port(line, "--hosts-file " + file.string() + " line " + std::to_string(n) + ":");
      hosts.push_back(line);
    } catch (const pnn::error& e) {
      if (reported.insert(line).second)
        std::fprintf(stderr, "pnn kfold: %s (skipped)\n", e.what());
    }
  }
  return hosts;
}

/// The hosts a K-fold wants now: --hosts, then the --hosts-file's lines.
std::vector<wanted_host> wanted_hosts(const kfold_options& o, std::set<std::string>& reported) {
  std::vector<wanted_host> wanted;
  for (const auto& h : o.hosts)
    wanted.push_back({h, "--hosts"});
  if (!o.hosts_file.empty())
    for (auto& h : read_hosts_file(o.hosts_file, reported))
      if (std::find(o.hosts.begin(), o.hosts.end(), h) == o.hosts.end())
        wanted.push_back({h, "--hosts-file " + o.hosts_file.string()});
  return wanted;
}

} // namespace

namespace {

/// --resume: the finished jobs of an earlier run keep their stored result.
std::map<uint32_t, job_result> kept_results(const std::vector<job_spec>& jobs, bool pruning) {
  std::map<uint32_t, job_result> kept;
  for (const auto& j : jobs) {
    auto file = fs::path(j.out_dir) / "result.json";
    std::error_code ec;
    if (!fs::exists(file, ec))
      continue;
    try {
      auto r = nlohmann::json::parse(read_text_file(file));
      if (!r.at("ok").get<bool>())
        continue;
      // Kept only if made with this run's settings: another run's accuracy must not
      // pass for this one's.
      const auto was = r.value("settings", std::string{"(none recorded)"});
      if (was != job_settings(j))
        bad("--resume: " + file.string() + " was made with other settings ("
            + settings_difference(was, job_settings(j))
            + "): use another --out, or the settings it was run with");
      job_result k;
      k.id = j.id;
      k.model = j.model;
      k.scheduler = j.scheduler;
      k.fold = j.fold;
      k.code = error_code::none;
      k.host = r.at("host").get<std::string>();
      k.slot = r.at("slot").get<int32_t>();
      k.val_accuracy = r.at("val_accuracy").get<double>();
      k.val_loss = r.at("val_loss").get<double>();
      k.train_loss = r.at("train_loss").get<double>();
      k.started_at = r.at("started_at_wall").get<double>();
      k.finished_at = r.at("finished_at_wall").get<double>();
      k.epochs_done = r.at("epochs_done").get<int64_t>();
      // Its curves and the parts it ran in (times relative to that run's start).
      auto figure = [](const nlohmann::json& e, const char* key) {
        return e.contains(key) && e[key].is_number() ? e[key].get<double>() : -1.0;
      };
      for (const auto& e : r.value("epochs", nlohmann::json::array())) {
        k.epoch_train_loss.push_back(figure(e, "train_loss"));
        k.epoch_val_loss.push_back(figure(e, "val_loss"));
        k.epoch_val_accuracy.push_back(figure(e, "val_accuracy"));
      }
      const double their_t0 = k.started_at - r.at("started_at").get<double>();
      for (const auto& part : r.value("segments", nlohmann::json::array()))
        for (const auto& at : part)
          k.segments.push_back(their_t0 + at.get<double>());
      // A job pruning stopped stays stopped with pruning; without, it goes on.
      if (k.epochs_done < j.epochs && !pruning)
        continue;
      kept[j.id] = k;
    } catch (const pnn::error&) {
      throw;
    } catch (const std::exception&) {
      // A damaged result file means the job runs again.
    }
  }
  return kept;
}

/// Longest first needs costs: one timed probe step per model and batch size at one
/// thread.
void estimate_costs(std::vector<job_spec>& jobs, const kfold_options& o,
                    const training::dataset& data) {
  use_intra_op_threads(1);
  std::map<std::pair<std::string, int64_t>, double> probe;
  for (const auto& j : jobs)
    if (!probe.count({j.model, j.batch_size}))
      probe[{j.model, j.batch_size}] =
        probe_step_seconds(j.model, data.channels(), 32, data.num_classes(), j.batch_size);
  const double n = static_cast<double>(data.size());
  for (auto& j : jobs) {
    const auto batch = static_cast<double>(j.batch_size);
    double batches = std::ceil(n * (o.folds - 1) / o.folds / batch);
    // Validation (inference mode, batch norm folded) costs about a fifth of a
    // training step per batch, on the epochs it runs after.
    double val_batches = std::ceil(n / o.folds / batch) / 5;
    int64_t validated = o.validate_every > 0 ? o.epochs / o.validate_every : 0;
    if (o.validate_every == 0 || o.epochs % o.validate_every != 0)
      ++validated;
    j.cost = probe[{j.model, j.batch_size}]
      * (batches * static_cast<double>(o.epochs) + val_batches * static_cast<double>(validated));
  }
}

/// A job resumed on another host takes its latest checkpoint along (that host
/// cannot read this one's folders).
std::optional<job_checkpoint> latest_checkpoint_of(const job_spec& job) {
  if (job.out_dir.empty())
    return std::nullopt;
  const auto file = fs::path(job.out_dir) / "latest.pt";
  std::error_code ec;
  if (!fs::exists(file, ec))
    return std::nullopt;
  job_checkpoint c;
  c.id = job.id;
  c.out_dir = job.out_dir;
  try {
    const auto bytes = read_text_file(file);
    c.bytes.assign(bytes.begin(), bytes.end());
    // Its steps file too (none beside a checkpoint that carries its steps inside).
    const auto steps = fs::path(job.out_dir) / training::steps_file_name;
    if (fs::exists(steps, ec))
      c.steps = training::read_steps_file(steps);
  } catch (const pnn::error&) {
    return std::nullopt; // unreadable: the job starts afresh there
  }
  return c;
}

/// kfold --prune: successive halving over the grid, with its journal in --out
/// (replayed by --resume; a fresh run starts a new one). Null without pruning.
std::shared_ptr<successive_halving> make_pruner(const kfold_options& o) {
  const auto prune = prune_options::parse(o.prune);
  std::error_code ec;
  if (!prune.enabled()) {
    // An earlier pruned run's decisions no longer hold once its jobs go on.
    fs::remove(o.out / pruning_journal_name, ec);
    return nullptr;
  }
  const auto configs = configurations(o);
  successive_halving::setup s;
  s.configs = configs.size();
  s.folds = o.folds;
  s.epochs = o.epochs;
  s.options = prune;
  s.rule = o.pruning_rule;
  for (const auto& c : configs)
    s.names.push_back(c.name);
  s.journal = o.out / pruning_journal_name;
  if (o.resume && fs::exists(s.journal, ec)) {
    s.replay = read_prune_journal(s.journal);
  } else {
    // Jobs of a run without pruning may be past the rungs: their decisions cannot
    // be taken as the rungs say.
    if (o.resume)
      for (const auto& j : expand_jobs(o)) {
        const fs::path dir = j.out_dir;
        bool trained = fs::exists(dir / "latest.pt", ec);
        if (!trained && fs::exists(dir / "result.json", ec))
          try { // (a job an interruption kept from starting trained nothing)
            trained = nlohmann::json::parse(read_text_file(dir / "result.json")).value("ok", false);
          } catch (const std::exception&) {
          }
        if (trained)
          bad("--resume --prune: " + dir.string() + " holds a job of a run without --prune (no "
              + s.journal.string() + "): resume it without --prune, or use another --out");
      }
    fs::remove(s.journal, ec);
  }
  return std::make_shared<successive_halving>(std::move(s));
}

/// How a K-fold run places its jobs.
struct placement {
  int32_t cores = 1;
  int32_t slots = 1;   ///< local slots
  int32_t threads = 1; ///< per job while jobs wait
};

/// What the queue gave back.
struct queue_outcome {
  std::vector<job_result> results;
  std::vector<host_join> joined;
  double cpu_mean = 0;
  size_t slots_used = 0;
  bool interrupted = false;
};

collector_options kfold_collector(const kfold_options& o, const std::vector<job_spec>& todo,
                                  double t0) {
  collector_options co;
  record_to_files(co, o.out);
  co.progress = o.progress;
  co.total_jobs = todo.size();
  const auto configs = configurations(o);
  for (const auto& j : todo) {
    co.labels[j.id] = config_of(configs, j.id, o.folds).name + "/" + fold_name(j.fold);
    co.costs[j.id] = j.cost;
  }
  // Each job is stored the moment it ends, not at the end of the run.
  std::map<uint32_t, job_spec> specs;
  for (const auto& j : todo)
    specs[j.id] = j;
  co.on_result = [t0, specs, configs, folds = o.folds, out = o.out](const job_result& r) {
    auto j = specs.find(r.id);
    if (!r.ok() || j == specs.end())
      return;
    const auto& config = config_of(configs, r.id, folds);
    store_result(r, t0, j->second, config);
    store_tensorboard(out, r, j->second, config);
  };
  return co;
}

/// Runs the jobs through a dispatcher, on this host's slots and the hosts' (which
/// may come and go while it runs: `elastic`).
queue_outcome run_queue(const kfold_options& o, const std::vector<job_spec>& todo,
                        const placement& p, double t0, std::shared_ptr<pruning_policy> pruner) {
  const bool elastic = !o.hosts.empty() || !o.hosts_file.empty();
  run_session session{{p.cores, elastic, o.peer_timeout, o.connect_timeout, o.tls, "--hosts"}};
  auto& cluster = session.cluster();
  // Other hosts first: a host that cannot be reached stops the run before any work.
  for (const auto& h : o.hosts)
    cluster.connect(h);
  auto collector = session.start_collector(kfold_collector(o, todo, t0));
  dispatcher_options dopt;
  dopt.cores = p.cores;
  dopt.threads_per_job = p.threads;
  // Thread shares are per host; with other hosts the tail keeps one thread per job.
  dopt.raise_threads_in_tail = o.raise_threads_in_tail && !o.serial && !elastic;
  dopt.wait_for_workers = elastic ? o.wait_for_hosts : 0;
  dopt.checkpoint_of = latest_checkpoint_of;
  dopt.pruning = std::move(pruner);
  auto dispatcher = session.keep(spawn_dispatcher(session.system(), collector, dopt));
  host_watcher_options watch;
  std::vector<worker_actor> workers;
  for (const auto& node : cluster.nodes())
    for (const auto& w : cluster.spawn_workers(node, collector)) {
      watch.initial.emplace_back(node.address, w);
      workers.push_back(w);
    }
  if (o.use_local) {
    worker_options wo;
    wo.customize = o.customize;
    for (auto& w : cluster.spawn_local_workers(p.slots, collector, wo))
      workers.push_back(w);
  }
  auto& self = session.self();
  for (auto& w : workers)
    self->send(dispatcher, add_atom::value, w);
  host_watcher_actor watcher;
  if (elastic) {
    auto reported = std::make_shared<std::set<std::string>>();
    watch.wanted = [&o, reported] { return wanted_hosts(o, *reported); };
    watch.interval = o.rejoin_interval;
    watch.t0 = t0;
    watch.log = [](const std::string& what) {
      std::fprintf(stderr, "pnn kfold: %s\n", what.c_str());
    };
    watcher = session.keep(
      spawn_host_watcher(session.system(), cluster, dispatcher, collector, std::move(watch)));
  }
  queue_outcome out;
  out.slots_used = workers.size();
  caf::error failure;
  {
    // Ctrl-C: every running job saves where it is, the queue stops, results come in.
    std::unique_ptr<interrupt_watch> watch;
    if (o.handle_interrupts)
      watch = std::make_unique<interrupt_watch>([&session, dispatcher] {
        std::fprintf(stderr, "\npnn kfold: interrupted: saving the running jobs (Ctrl-C again "
                             "to quit at once)\n");
        caf::scoped_actor s{session.system()};
        s->send(dispatcher, interrupt_atom::value);
      });
    self->request(dispatcher, caf::infinite, run_atom::value, todo)
      .receive([&](std::vector<job_result>& r) { out.results = std::move(r); },
               [&](caf::error& e) { failure = std::move(e); });
    out.interrupted = watch && watch->fired();
  }
  if (watcher)
    self->request(watcher, caf::infinite, done_atom::value)
      .receive([&](std::vector<host_join>& j) { out.joined = std::move(j); }, [&](caf::error&) {});
  out.cpu_mean = session.finish_collector();
  if (failure)
    throw pnn::error(error_code::run_failed,
                     "K-fold run failed: " + session.system().render(failure));
  return out;
}

/// Per job: result.json beside its files (a failed job's, here; a finished job's was
/// stored when it ended); per configuration: time.json. The jobs' JSON list.
std::vector<job_summary> write_job_files(const kfold_options& o,
                                         const std::vector<job_result>& results,
                                         const std::map<uint32_t, job_result>& kept, double t0,
                                         const std::vector<job_spec>& specs) {
  const auto configs = configurations(o);
  std::map<uint32_t, nlohmann::json> times;
  std::vector<job_summary> jobs;
  for (const auto& r : results) {
    const auto& config = config_of(configs, r.id, o.folds);
    auto j = summary_of(r, t0, config, o.epochs);
    if (!kept.count(r.id)) {
      if (!r.ok() && r.id < specs.size())
        store_result(r, t0, specs[r.id], config);
    } else {
      j.more["kept_from_earlier_run"] = true;
    }
    times[config.index].push_back(
      {{"fold", r.fold}, {"seconds", j.more["seconds"]}, {"host", r.host}});
    jobs.push_back(std::move(j));
  }
  for (const auto& [index, list] : times) {
    double total = 0;
    for (const auto& e : list)
      total += e["seconds"].get<double>();
    write_file_atomic(o.out / configs.at(index).dir / "time.json",
                      nlohmann::json{{"folds", list}, {"total_seconds", total}}.dump(2) + "\n");
  }
  return jobs;
}

/// Accuracy table: mean and (population) std over the folds that finished.
std::vector<kfold_report::cell> accuracy_table(const kfold_options& o,
                                               const std::vector<job_result>& results) {
  std::vector<kfold_report::cell> table;
  for (const auto& config : configurations(o)) {
    kfold_report::cell c;
    c.model = config.model;
    c.scheduler = config.scheduler;
    c.config = config;
    std::vector<double> acc;
    for (const auto& r : results)
      if (config_of_job(r.id, o.folds) == config.index && r.ok()) {
        acc.push_back(r.val_accuracy);
        c.pruned = c.pruned || r.epochs_done < o.epochs;
        c.epochs_done = std::max(c.epochs_done, r.epochs_done);
      }
    c.folds_ok = static_cast<int>(acc.size());
    for (auto a : acc)
      c.mean += a / static_cast<double>(acc.size());
    for (auto a : acc)
      c.std += (a - c.mean) * (a - c.mean) / static_cast<double>(acc.size());
    c.std = std::sqrt(c.std);
    table.push_back(c);
  }
  return table;
}

std::string summary_markdown(const kfold_options& o, const kfold_report& report) {
  std::ostringstream md;
  md << "# pnn kfold: " << o.dataset << ", " << o.folds << " folds, " << o.epochs << " epoch(s), "
     << (o.serial ? "serial" : "parallel") << "\n\n";
  // The grid fields that vary get a column each.
  const bool optimizers = o.optimizers.size() > 1, lrs = o.lrs.size() > 1,
             batch_sizes = o.batch_sizes.size() > 1;
  const bool pruning = prune_options::parse(o.prune).enabled();
  md << "| model | scheduler |" << (optimizers ? " optimizer |" : "") << (lrs ? " lr |" : "")
     << (batch_sizes ? " batch size |" : "") << (pruning ? " pruned |" : "")
     << " val accuracy (mean) | std | folds |\n|---|---|" << (optimizers ? "---|" : "")
     << (lrs ? "---|" : "") << (batch_sizes ? "---|" : "") << (pruning ? "---|" : "")
     << "---|---|---|\n";
  char buf[128];
  for (const auto& c : report.table) {
    std::snprintf(buf, sizeof buf, "| %.4f | %.4f | %d |\n", c.mean, c.std, c.folds_ok);
    md << "| " << c.model << " | " << c.scheduler << " ";
    if (optimizers)
      md << "| " << c.config.optimizer << " ";
    if (lrs)
      md << "| " << lr_text(c.config.lr) << " ";
    if (batch_sizes)
      md << "| " << c.config.batch_size << " ";
    if (pruning)
      md << "| " << (c.pruned ? "pruned after epoch " + std::to_string(c.epochs_done) : "") << " ";
    md << buf;
  }
  std::snprintf(buf, sizeof buf, "\nWall time %.1f s, mean CPU utilisation %.1f%%.\n",
                report.wall_seconds, 100 * report.cpu_utilization_mean);
  md << buf;
  return md.str();
}

/// summary.json's "prune": the rule, its rungs and decisions, and the core-seconds
/// the jobs ran against an estimate of the whole grid's (each configuration's
/// seconds per epoch, over every epoch of every fold).
nlohmann::json pruning_summary(const kfold_options& o, const successive_halving& pruner,
                               const std::vector<job_summary>& jobs) {
  size_t promoted = 0, stopped = 0;
  for (const auto& e : pruner.events()) {
    promoted += e.kind == "promote" ? 1 : 0;
    stopped += e.kind == "stop" ? 1 : 0;
  }
  std::map<uint32_t, std::pair<double, double>> per_config; // seconds, epochs
  double spent = 0;
  for (const auto& j : jobs) {
    const double busy = j.more.value("busy_seconds", 0.0);
    spent += busy;
    if (!j.ok)
      continue;
    auto& c = per_config[config_of_job(j.more.value("id", 0u), o.folds)];
    c.first += busy;
    c.second += static_cast<double>(j.more.value("epochs_done", int64_t{0}));
  }
  double exhaustive = 0;
  for (const auto& [config, c] : per_config)
    if (c.second > 0)
      exhaustive += c.first / c.second * static_cast<double>(o.epochs * o.folds);
  return {{"rule", prune_options::parse(o.prune).spec()},
          {"rungs", pruner.rungs()},
          {"journal", pruning_journal_name},
          {"promotions", promoted},
          {"configs_stopped", stopped},
          {"job_seconds", spent},
          {"exhaustive_job_seconds_estimate", exhaustive}};
}

run_summary kfold_summary(const kfold_options& o, const kfold_report& report, const placement& p,
                          const queue_outcome& q, int64_t train_samples,
                          std::vector<job_summary> jobs, const successive_halving* pruner) {
  size_t failed = 0;
  for (const auto& r : report.jobs)
    failed += r.ok() ? 0 : 1;
  auto hosts_joined = nlohmann::json::array();
  for (const auto& j : q.joined)
    hosts_joined.push_back({{"address", j.address}, {"joined_at", j.at}, {"slots", j.slots}});
  run_summary s;
  s.command = "kfold";
  s.dataset = o.dataset;
  s.wall_seconds = report.wall_seconds;
  s.cpu_utilization_mean = report.cpu_utilization_mean;
  s.cores = p.cores;
  s.mode = o.serial ? "serial" : "parallel";
  s.slots = static_cast<int64_t>(q.slots_used);
  for (const auto& c : report.table)
    s.table.push_back({c.model, c.scheduler, c.mean, c.std, c.folds_ok, c.config.name,
                       c.config.optimizer, c.config.lr, c.config.batch_size,
                       c.pruned ? std::optional<int64_t>(c.epochs_done) : std::nullopt});
  nlohmann::json prune = pruner ? pruning_summary(o, *pruner, jobs) : nlohmann::json{};
  s.jobs = std::move(jobs);
  s.more = {{"user_cpu_seconds", report.user_cpu_seconds},
            {"system_cpu_seconds", report.system_cpu_seconds},
            {"peak_rss_bytes", report.peak_rss_bytes},
            {"hosts", o.hosts},
            {"hosts_joined", hosts_joined},
            {"local_slots", o.use_local ? p.slots : 0},
            {"threads_per_job", p.threads},
            {"train_samples", train_samples},
            {"folds", o.folds},
            {"epochs", o.epochs},
            {"validate_every", o.validate_every},
            {"grid",
             {{"models", o.models},
              {"schedulers", o.schedulers},
              {"optimizers", values_of(o.optimizers, o.optimizer)},
              {"lrs", values_of(o.lrs, o.lr)},
              {"batch_sizes", values_of(o.batch_sizes, o.batch_size)}}},
            {"seed", o.seed},
            {"jobs_failed", failed},
            {"interrupted", report.interrupted}};
  // The one value every job used; a grid field that varies has no single value
  // (each job and table row names its own).
  if (o.batch_sizes.size() <= 1)
    s.more["batch_size"] = values_of(o.batch_sizes, o.batch_size)[0];
  if (o.optimizers.size() <= 1)
    s.more["optimizer"] = values_of(o.optimizers, o.optimizer)[0];
  if (o.lrs.size() <= 1)
    s.more["lr"] = values_of(o.lrs, o.lr)[0];
  if (pruner)
    s.more["prune"] = prune;
  return s;
}

} // namespace

kfold_report run_kfold(const kfold_options& o) {
  validate(o);
  const run_meter meter;
  const double t0 = meter.started_at();
  placement p;
  p.cores = o.cores > 0 ? o.cores : available_cores();
  p.slots = o.serial ? 1 : (o.slots > 0 ? o.slots : p.cores);
  p.threads = o.threads_per_job > 0 ? o.threads_per_job : (o.serial ? p.cores : 1);
  ensure_directory(o.out);

  // Load the data once (it is shared with every job) and check the split fits.
  auto data = shared_dataset(o.dataset, o.data_dir, o.subset);
  if (data.train->size() < o.folds)
    bad("--folds " + std::to_string(o.folds) + ": more folds than the "
        + std::to_string(data.train->size()) + " training samples");
  auto jobs = expand_jobs(o);
  auto pruner = make_pruner(o); // before any work: a journal of other settings is refused
  std::map<uint32_t, job_result> kept;
  if (o.resume)
    kept = kept_results(jobs, prune_options::parse(o.prune).enabled());
  std::vector<job_spec> todo;
  for (auto& j : jobs)
    if (!kept.count(j.id))
      todo.push_back(j);
  if (o.estimate_costs && todo.size() > 1)
    estimate_costs(todo, o, *data.train);

  write_tensorboard_experiment(o, t0);
  queue_outcome q;
  q.slots_used = static_cast<size_t>(o.use_local ? p.slots : 0);
  if (!todo.empty())
    q = run_queue(o, todo, p, t0, pruner);

  kfold_report report;
  report.interrupted = q.interrupted;
  report.jobs = q.results;
  for (auto& [id, r] : kept)
    report.jobs.push_back(r);
  std::sort(report.jobs.begin(), report.jobs.end(),
            [](const job_result& a, const job_result& b) { return a.id < b.id; });
  const auto spent = meter.read();
  report.wall_seconds = spent.wall_seconds;
  report.cpu_utilization_mean = q.cpu_mean;
  report.user_cpu_seconds = spent.user_cpu_seconds;
  report.system_cpu_seconds = spent.system_cpu_seconds;
  report.peak_rss_bytes = spent.peak_rss_bytes;
  auto jobs_written = write_job_files(o, report.jobs, kept, t0, jobs);
  report.table = accuracy_table(o, report.jobs);
  report.summary =
    kfold_summary(o, report, p, q, data.train->size(), std::move(jobs_written), pruner.get())
      .to_json();
  write_file_atomic(o.out / "summary.json", report.summary.dump(2) + "\n");
  write_file_atomic(o.out / "summary.md", summary_markdown(o, report));
  return report;
}

} // namespace pnn

#include <pnn/experiments/async_kfold.hpp>

namespace pnn {

std::function<void(const job_spec&, training::job_options&)>
customize_jobs(training::criterion_fn criterion, training::optimizer_factory make_optimizer,
               std::function<void(const job_spec&, training::job_options&)> then) {
  return [criterion = std::move(criterion), make_optimizer = std::move(make_optimizer),
          then = std::move(then)](const job_spec& spec, training::job_options& j) {
    if (criterion)
      j.criterion = criterion;
    if (make_optimizer)
      j.make_optimizer = make_optimizer;
    if (then)
      then(spec, j);
  };
}

kfold_experiment::kfold_experiment(int k, std::string dataset, std::filesystem::path root_dir,
                                   training::criterion_fn criterion, int64_t batch_size,
                                   bool parallelize)
  : criterion_(std::move(criterion)) {
  options_.folds = k;
  options_.dataset = std::move(dataset);
  options_.out = std::move(root_dir);
  options_.batch_size = batch_size;
  options_.serial = !parallelize;
}

kfold_report kfold_experiment::operator()(const std::vector<std::string>& models,
                                          const std::vector<std::string>& schedulers,
                                          training::optimizer_factory get_optimizer,
                                          const trainer_params& params) {
  auto o = options_;
  o.models = models;
  o.schedulers = schedulers;
  o.epochs = params.epochs;
  o.checkpoint_every = params.save_checkpoint_frequency;
  o.progress = params.progress;
  o.customize = customize_jobs(criterion_, std::move(get_optimizer), o.customize);
  return run_kfold(o);
}

kfold_report kfold_experiment::run_factories(
  const std::vector<std::pair<std::string, models::model_factory>>& models,
  const std::vector<std::string>& schedulers, training::optimizer_factory get_optimizer,
  const trainer_params& params) {
  std::vector<std::string> names;
  for (const auto& [name, factory] : models) {
    models::register_model(name, "user model", factory);
    names.push_back(name);
  }
  return (*this)(names, schedulers, std::move(get_optimizer), params);
}

} // namespace pnn
