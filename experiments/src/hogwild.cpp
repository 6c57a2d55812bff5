#include <pnn/experiments/hogwild.hpp>

#include <pnn/experiments/distributed.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/interrupt.hpp>
#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/random.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/schedules.hpp>
#include <pnn/system.hpp>
#include "replica_run.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <sstream>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

std::string worker_name(int32_t i) {
  return detail::worker_name(static_cast<size_t>(i));
}

/// Moving average over the last `window` values.
class moving_mean {
public:
  explicit moving_mean(int64_t window)
    : window_(static_cast<size_t>(std::max<int64_t>(1, window))) {
  }
  double add(double v) {
    values_.push_back(v);
    sum_ += v;
    if (values_.size() > window_) {
      sum_ -= values_.front();
      values_.pop_front();
    }
    return sum_ / static_cast<double>(values_.size());
  }

private:
  size_t window_;
  std::deque<double> values_;
  double sum_ = 0;
};

std::string num(double v, int digits = 6) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

} // namespace

void validate(const hogwild_options& o) {
  o.replica_group::validate("hogwild");
  o.optimizer_group::validate();
  o.schedule_group::validate();
  o.output_group::validate();
  if (o.workers < 0 || o.workers > 1024)
    bad("--workers " + std::to_string(o.workers) + ": expected 1..1024 (0: one per core)");
  if (o.balance != "dynamic" && o.balance != "static")
    bad("--balance " + o.balance + ": expected dynamic or static");
}

std::vector<loss_point> merged_loss_curve(const std::vector<const hogwild_worker_report*>& workers,
                                          int64_t window) {
  std::vector<loss_point> all;
  for (size_t w = 0; w < workers.size(); ++w)
    for (const auto& s : workers[w]->steps)
      all.push_back({s.time, static_cast<int32_t>(w), s.step, s.loss, 0});
  std::stable_sort(all.begin(), all.end(),
                   [](const loss_point& a, const loss_point& b) { return a.time < b.time; });
  moving_mean mean{window};
  for (auto& p : all)
    p.smoothed = mean.add(p.loss);
  return all;
}

std::vector<loss_point> merged_loss_curve(const hogwild_report& report, int64_t window) {
  std::vector<const hogwild_worker_report*> workers;
  for (const auto& w : report.workers)
    workers.push_back(&w);
  return merged_loss_curve(workers, window);
}

void write_loss_files(const fs::path& out, const std::vector<const hogwild_worker_report*>& workers,
                      int64_t window) {
  for (size_t i = 0; i < workers.size(); ++i) {
    std::ostringstream csv;
    csv << "time,epoch,batch,step,loss,loss_smoothed\n";
    moving_mean mean{window};
    for (const auto& s : workers[i]->steps)
      csv << num(s.time, 9) << ',' << s.epoch << ',' << s.batch << ',' << s.step << ','
          << num(s.loss, 8) << ',' << num(mean.add(s.loss), 8) << '\n';
    write_file_atomic(out / ("loss_" + worker_name(static_cast<int32_t>(i)) + ".csv"), csv.str());
  }
  std::ostringstream csv;
  csv << "time,worker,step,loss,loss_smoothed\n";
  for (const auto& p : merged_loss_curve(workers, window))
    csv << num(p.time, 9) << ',' << p.worker << ',' << p.step << ',' << num(p.loss, 8) << ','
        << num(p.smoothed, 8) << '\n';
  write_file_atomic(out / "loss.csv", csv.str());
}

double time_to_loss(const hogwild_report& report, double target, int64_t window) {
  for (const auto& p : merged_loss_curve(report, window))
    if (p.smoothed <= target)
      return p.time;
  return std::numeric_limits<double>::quiet_NaN();
}

namespace {

/// What a worker's prepare hook records: its job's start on the wall clock and every
/// step (each worker writes only its own slot).
struct trace {
  double zero = 0; ///< wall clock when the job's clock read 0
  std::vector<step_record> steps;
  int64_t samples = 0;
};
using traces = std::vector<trace>;

/// Worker i's options: its slot, the run's data, and a prepare hook that makes its
/// replica alias the master's parameters and records its steps.
worker_options hogwild_worker(const hogwild_options& o, int32_t i, const dataset_pair& data,
                              std::shared_ptr<models::Network> master,
                              std::shared_ptr<traces> recorded,
                              std::shared_ptr<batch_queue> queue) {
  worker_options wo;
  wo.slot = i;
  wo.customize = o.customize;
  if (queue) // dynamic balance: one queue of every epoch's batches for all workers
    wo.customize = [queue, user = o.customize](const job_spec& spec, job_options& j) {
      j.shared_batches = queue;
      if (user)
        user(spec, j);
    };
  wo.train_data = data.train;
  wo.prepare = [master, recorded, i](const job_spec&, training_job& job) {
    share_parameters(*master, *job.model());
    auto& t = (*recorded)[static_cast<size_t>(i)];
    t.zero = wall_clock_seconds() - job.elapsed_seconds();
    t.steps = job.step_records(); // a resumed job's steps before the interrupt
    t.samples = job.samples_done();
    auto inner = job.on_step;
    job.on_step = [inner, &t, &job](const step_record& s) {
      t.steps.push_back(s);
      t.samples = job.samples_done();
      if (inner)
        inner(s);
    };
  };
  return wo;
}

/// How the workers ended.
struct training_outcome {
  std::vector<job_result> results; ///< in worker order
  double cpu_mean = 0;
  bool interrupted = false; ///< Ctrl-C: each worker saved where it was
};

/// Trains the workers' specs to their end (or, on Ctrl-C, to their next slice);
/// `queue`: the shared batches (dynamic balance), else null.
training_outcome train_workers(const hogwild_options& o, const std::vector<job_spec>& specs,
                               const dataset_pair& data, std::shared_ptr<models::Network> master,
                               std::shared_ptr<traces> recorded, int32_t cores,
                               std::shared_ptr<batch_queue> queue) {
  const auto n = static_cast<int32_t>(specs.size());
  // No more scheduler threads than workers: an idle scheduler thread only steals a
  // worker's next slice and moves it to another core, cache-cold.
  session_options so;
  so.threads = std::min(cores, n);
  run_session session{so};
  collector_options co;
  record_to_files(co, o.out);
  co.progress = o.progress;
  co.total_jobs = static_cast<size_t>(n);
  for (const auto& s : specs) {
    co.labels[s.id] = detail::worker_name(s.id);
    co.costs[s.id] = 1;
  }
  auto collector = session.start_collector(co);
  std::vector<worker_actor> workers;
  for (int32_t i = 0; i < n; ++i)
    workers.push_back(session.keep(spawn_worker(
      session.system(), collector, hogwild_worker(o, i, data, master, recorded, queue))));
  auto& self = session.self();
  // Every request first, then the answers in order (a blocking actor receives a
  // response only through its request's handle).
  std::vector<decltype(self->request(workers.front(), caf::infinite, run_atom::value,
                                     specs.front()))>
    pending;
  for (int32_t i = 0; i < n; ++i)
    pending.push_back(self->request(workers[static_cast<size_t>(i)], caf::infinite, run_atom::value,
                                    specs[static_cast<size_t>(i)]));
  training_outcome out;
  out.results.resize(static_cast<size_t>(n));
  {
    // Ctrl-C: every worker saves where it is at its next slice and ends.
    std::unique_ptr<interrupt_watch> watch;
    if (o.handle_interrupts)
      watch = std::make_unique<interrupt_watch>([workers] {
        std::fprintf(stderr, "\npnn hogwild: interrupted: the workers save where they are "
                             "(Ctrl-C again to quit at once)\n");
        for (const auto& w : workers)
          caf::anon_send(w, interrupt_atom::value);
      });
    for (int32_t i = 0; i < n; ++i)
      pending[static_cast<size_t>(i)].receive(
        [&](job_result& r) {
          self->send(collector, result_atom::value, r);
          out.results[static_cast<size_t>(i)] = std::move(r);
        },
        [&](caf::error& e) {
          out.results[static_cast<size_t>(i)] = failed_job(
            static_cast<uint32_t>(i), error_code::worker_lost, session.system().render(e));
        });
    out.interrupted = watch && watch->fired();
  }
  out.cpu_mean = session.finish_collector();
  return out;
}

/// Each worker's result and steps, times relative to the start of training (the
/// earliest worker's clock zero).
void collect_workers(hogwild_report& report, const std::vector<job_result>& results,
                     const traces& recorded) {
  double t0 = std::numeric_limits<double>::infinity();
  for (const auto& t : recorded)
    t0 = std::min(t0, t.zero);
  report.train_started_at = std::isfinite(t0) ? t0 : 0;
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& t = recorded[i];
    hogwild_worker_report w;
    w.result = results[i];
    w.steps = t.steps;
    for (auto& s : w.steps)
      s.time += t.zero - t0;
    w.samples = t.samples;
    report.workers.push_back(std::move(w));
  }
}

nlohmann::json worker_list(const hogwild_report& report, const std::vector<job_spec>& specs,
                           const fs::path& out) {
  nlohmann::json workers = nlohmann::json::array();
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& w = report.workers[i];
    nlohmann::json losses = nlohmann::json::array();
    for (auto l : w.result.epoch_train_loss)
      losses.push_back(number_or_null(l));
    workers.push_back({{"worker", i},
                       {"samples", w.samples},
                       {"steps", w.steps.size()},
                       {"started_at", w.steps.empty() ? 0.0 : w.steps.front().time},
                       {"finished_at", w.steps.empty() ? 0.0 : w.steps.back().time},
                       {"train_loss", number_or_null(w.result.train_loss)},
                       {"epoch_train_loss", losses},
                       {"files", fs::relative(specs[i].out_dir, out).string()}});
  }
  return workers;
}

std::string hogwild_markdown(const hogwild_options& o, const hogwild_report& report,
                             const std::string& model, const std::string& dataset, int32_t n) {
  std::ostringstream md;
  char buf[256];
  md << "# pnn hogwild: " << model << " on " << dataset << ", " << n << " worker(s)\n\n"
     << "| workers | epochs | test accuracy | final train loss | samples/s | training time | wall "
        "time |\n"
     << "|---|---|---|---|---|---|---|\n";
  std::snprintf(buf, sizeof buf, "| %d | %lld | %.4f | %.4f | %.0f | %.1f s | %.1f s |\n", n,
                static_cast<long long>(o.epochs), report.test_accuracy, report.final_train_loss,
                report.samples_per_second, report.train_seconds, report.wall_seconds);
  md << buf;
  std::snprintf(buf, sizeof buf, "\nMean CPU utilisation %.1f%%, CPU user %.1f s, system %.1f s.\n",
                100 * report.cpu_utilization_mean, report.user_cpu_seconds,
                report.system_cpu_seconds);
  md << buf;
  return md.str();
}

} // namespace

namespace {

/// The settings a resumed run must share with the run it continues (summary.json
/// keys, each the flag of the same name).
nlohmann::json resume_settings(const hogwild_options& o, const std::string& model,
                               const std::string& dataset, int64_t train_samples, int32_t n) {
  return {{"command", "hogwild"},  {"model", model},
          {"dataset", dataset},    {"train_samples", train_samples},
          {"optimizer", o.optimizer}, {"lr", o.lr},
          {"scheduler", o.scheduler}, {"epochs", o.epochs},
          {"batch_size", o.batch_size}, {"seed", o.seed},
          {"shard_seed", o.shard_seed}, {"workers", n},
          {"balance", n > 1 ? o.balance : "none"}};
}

/// --resume: the stopped run's summary must say it was interrupted with these settings.
void check_resumable(const fs::path& out, const nlohmann::json& settings) {
  const auto file = out / "summary.json";
  std::error_code ec;
  if (!fs::exists(file, ec))
    bad("--resume: " + file.string()
        + " not found (--resume continues a hogwild run that Ctrl-C stopped in --out)");
  nlohmann::json before;
  try {
    before = nlohmann::json::parse(read_text_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw pnn::error(error_code::malformed_file, file.string() + ": not JSON (" + e.what() + ")");
  }
  if (!before.is_object() || !before.value("interrupted", false))
    bad("--resume: " + file.string() + " is a finished run, not an interrupted one");
  for (const auto& [key, value] : settings.items())
    if (!before.contains(key) || before.at(key) != value) {
      auto flag = key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      bad("--resume: the run in " + out.string() + " had " + key + " "
          + (before.contains(key) ? before.at(key).dump() : std::string{"(none)"})
          + ", this one asks " + value.dump() + " (--" + flag
          + "): resume with the run's own settings, or start another --out");
    }
}

void load_model(models::Network& model, const fs::path& file) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(file.string());
    model.load(archive);
  } catch (const c10::Error& e) {
    const std::string why = e.what_without_backtrace();
    throw pnn::error(error_code::malformed_file, file.string() + ": not this run's model ("
                                                   + why.substr(0, why.find('\n')) + ")");
  }
}

nlohmann::json queue_json(const batch_queue::position& p) {
  nlohmann::json taken = nlohmann::json::object();
  for (const auto& [epoch, samples] : p.taken)
    taken[std::to_string(epoch)] = samples;
  return {{"first_epoch", p.first_epoch}, {"taken", taken}};
}

batch_queue::position queue_position(const fs::path& file) {
  try {
    const auto j = nlohmann::json::parse(read_text_file(file));
    batch_queue::position p;
    p.first_epoch = j.at("first_epoch").get<int64_t>();
    for (const auto& [epoch, samples] : j.at("taken").items())
      p.taken[std::stoll(epoch)] = samples.get<int64_t>();
    return p;
  } catch (const std::exception& e) {
    if (const auto* pe = dynamic_cast<const pnn::error*>(&e))
      throw *pe;
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": expected {\"first_epoch\": N, \"taken\": {epoch: samples}} ("
                       + e.what() + ")");
  }
}

} // namespace

hogwild_report run_hogwild(const hogwild_options& o) {
  validate(o);
  const run_meter meter;
  const int32_t cores = o.cores > 0 ? o.cores : available_cores();
  const int32_t n = o.workers > 0 ? o.workers : cores;
  ensure_directory(o.out);
  // The data, loaded once and shared by every worker.
  const auto data = detail::replica_data(o, o);
  if (data.train->size() < n)
    bad("--workers " + std::to_string(n) + ": more workers than the "
        + std::to_string(data.train->size()) + " training samples");
  // The master model: every worker's replica aliases its parameters.
  std::shared_ptr<models::Network> master = o.initial_model;
  if (!master)
    master = make_seeded_model(o.model, data.train->channels(), data.train->num_classes(), o.seed);
  const std::string model_name = master->registry_name();
  const std::string dataset = detail::replica_dataset_name(o, o);
  const auto settings = resume_settings(o, model_name, dataset, data.train->size(), n);
  std::shared_ptr<batch_queue> queue;
  if (o.balance == "dynamic" && n > 1)
    queue = std::make_shared<batch_queue>(all_indices(data.train->size()), o.batch_size, n,
                                          derive_seed(o.seed, 0xBA7C4));
  const auto queue_file = o.out / "batch_queue.json";
  if (o.resume) {
    check_resumable(o.out, settings);
    load_model(*master, o.out / "model.pt");
    if (queue)
      queue->restore(queue_position(queue_file));
  }
  std::vector<job_spec> specs;
  for (int32_t i = 0; i < n; ++i) {
    specs.push_back(detail::worker_spec(o, o, o, o, model_name, dataset, i, n));
    specs.back().out_dir = (o.out / "workers" / worker_name(i)).string();
    specs.back().resume = o.resume;
    // A run that may be interrupted keeps each worker's end: one that finished before
    // the others were stopped has nothing left to do when the run resumes.
    if (o.handle_interrupts)
      specs.back().checkpoint_every = o.epochs;
  }

  hogwild_report report;
  report.model = master;
  auto recorded = std::make_shared<traces>(static_cast<size_t>(n));
  auto outcome = train_workers(o, specs, data, master, recorded, cores, queue);
  report.cpu_utilization_mean = outcome.cpu_mean;
  report.interrupted = outcome.interrupted;
  for (int32_t i = 0; i < n; ++i) {
    const auto& r = outcome.results[static_cast<size_t>(i)];
    if (!r.ok() && !(outcome.interrupted && r.code == error_code::interrupted))
      throw pnn::error(error_code::run_failed, "hogwild: " + worker_name(i) + " failed: " + r.error);
  }
  collect_workers(report, outcome.results, *recorded);
  std::vector<const hogwild_worker_report*> workers;
  for (const auto& w : report.workers)
    workers.push_back(&w);
  detail::set_throughput(report, workers);
  // Test the master (the model_tester's files: confusion.csv, test.json).
  detail::test_model(report, *master, specs.front(), o, data.test, o.out, cores);
  write_loss_files(o.out, workers, o.loss_window);
  detail::write_events(o.out, report, workers,
                       detail::replica_hparams(o, o, o, model_name, n, {{"balance", o.balance}}),
                       !outcome.interrupted);
  detail::save_model(*master, o.out / "model.pt");
  if (outcome.interrupted && queue)
    write_file_atomic(queue_file, queue_json(queue->where()).dump() + "\n");
  if (!outcome.interrupted) { // the workers' ends are of no more use
    std::error_code ec;
    fs::remove(queue_file, ec);
    const auto last = "epoch_" + std::to_string(o.epochs) + ".pt";
    for (const auto& spec : specs)
      for (const auto& name : {std::string{"latest.pt"}, std::string{"steps.bin"}, last})
        fs::remove(fs::path{spec.out_dir} / name, ec);
  }
  detail::set_spending(report, meter);

  auto summary =
    detail::shared_summary("hogwild", report, o, o, o,
                           {dataset, model_name, models::parameter_count(*master),
                            data.train->size(), data.test ? data.test->size() : 0, cores});
  summary.workers = n;
  summary.more.update(
    {{"balance", n > 1 ? o.balance : "none"}, {"worker_list", worker_list(report, specs, o.out)}});
  if (outcome.interrupted || o.resume)
    summary.more["interrupted"] = outcome.interrupted;
  report.summary = summary.to_json();
  write_file_atomic(o.out / "summary.json", report.summary.dump(2) + "\n");
  write_file_atomic(o.out / "summary.md", hogwild_markdown(o, report, model_name, dataset, n));
  return report;
}

} // namespace pnn
