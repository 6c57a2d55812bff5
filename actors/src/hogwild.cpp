#include <pnn/actors/hogwild.hpp>

#include <pnn/actors/distributed.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
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
#include <pnn/training/system.hpp>
#include "shared_run.hpp"

#include <caf/all.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <limits>
#include <mutex>
#include <sstream>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

namespace {

using detail::finite_or_null;

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

std::string worker_name(int32_t i) {
  return "worker" + std::to_string(i);
}

/// Moving average over the last `window` values.
class moving_mean {
public:
  explicit moving_mean(int64_t window) : window_(static_cast<size_t>(std::max<int64_t>(1, window))) {
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
  detail::validate_shared("hogwild", o);
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

hogwild_report run_hogwild(const hogwild_options& in) {
  validate(in);
  const hogwild_options& o = in;
  const auto wall_start = std::chrono::steady_clock::now();
  const auto cpu_start = process_cpu_times();
  const int32_t cores = o.cores > 0 ? o.cores : available_cores();
  const int32_t n = o.workers > 0 ? o.workers : cores;
  ensure_directory(o.out);

  // The data, loaded once and shared by every worker.
  dataset_pair data;
  if (o.train_data) {
    data.train = o.train_data;
    data.test = o.test_data;
  } else {
    data = shared_dataset(o.dataset, o.data_dir, o.subset);
    if (o.test_data)
      data.test = o.test_data;
  }
  if (data.train->size() < n)
    bad("--workers " + std::to_string(n) + ": more workers than the "
        + std::to_string(data.train->size()) + " training samples");

  // The master model: every worker's replica aliases its parameters.
  std::shared_ptr<models::Network> master = o.initial_model;
  if (!master)
    master = make_seeded_model(o.model, data.train->channels(), data.train->num_classes(), o.seed);
  const std::string model_name = master->registry_name();

  // One spec per worker: shard i of n.
  std::vector<job_spec> specs;
  for (int32_t i = 0; i < n; ++i) {
    job_spec s;
    s.id = static_cast<uint32_t>(i);
    s.model = model_name;
    s.scheduler = o.scheduler;
    s.optimizer = o.optimizer;
    s.lr = o.lr;
    s.dataset = o.train_data && !o.train_data->name.empty() ? o.train_data->name : o.dataset;
    s.data_dir = o.data_dir;
    s.subset = o.subset;
    s.shards = n;
    s.shard = i;
    s.split_seed = o.shard_seed;
    s.seed = i == 0 ? o.seed : derive_seed(o.seed, static_cast<uint64_t>(i));
    s.epochs = o.epochs;
    s.batch_size = o.batch_size;
    s.threads = o.threads_per_worker;
    s.out_dir = (o.out / "workers" / worker_name(i)).string();
    specs.push_back(s);
  }

  // What the workers' prepare hooks record: each job's start on the wall clock and
  // every step (each worker writes only its own slot).
  struct trace {
    double zero = 0; // wall clock when the job's clock read 0
    std::vector<step_record> steps;
    int64_t samples = 0;
  };
  // Dynamic balance: one queue of every epoch's batches for all workers.
  std::shared_ptr<batch_queue> queue;
  if (o.balance == "dynamic" && n > 1)
    queue = std::make_shared<batch_queue>(all_indices(data.train->size()), o.batch_size, n,
                                          derive_seed(o.seed, 0xBA7C4));
  auto customize = o.customize;
  if (queue)
    customize = [queue, user = o.customize](const job_spec& spec, job_options& j) {
      j.shared_batches = queue;
      if (user)
        user(spec, j);
    };
  auto traces = std::make_shared<std::vector<trace>>(static_cast<size_t>(n));

  hogwild_report report;
  report.model = master;
  std::vector<job_result> results(static_cast<size_t>(n));
  {
    caf::actor_system_config cfg;
    // No more scheduler threads than workers: an idle scheduler thread only steals a
    // worker's next slice and moves it to another core, cache-cold.
    configure_actor_system(cfg, static_cast<size_t>(std::min(cores, n)));
    caf::actor_system sys{cfg};
    collector_options co;
    co.out_dir = o.out;
    co.progress = o.progress;
    co.total_jobs = static_cast<size_t>(n);
    for (const auto& s : specs) {
      co.labels[s.id] = worker_name(static_cast<int32_t>(s.id));
      co.costs[s.id] = 1;
    }
    auto collector = sys.spawn(metric_collector, co);
    std::vector<worker_actor> workers;
    for (int32_t i = 0; i < n; ++i) {
      worker_options wo;
      wo.slot = i;
      wo.customize = customize;
      wo.train_data = data.train;
      wo.prepare = [master, traces, i](const job_spec&, training_job& job) {
        share_parameters(*master, *job.model());
        auto& t = (*traces)[static_cast<size_t>(i)];
        t.zero = wall_clock_seconds() - job.elapsed_seconds();
        auto inner = job.on_step;
        job.on_step = [inner, &t, &job](const step_record& s) {
          t.steps.push_back(s);
          t.samples = job.samples_done();
          if (inner)
            inner(s);
        };
      };
      workers.push_back(spawn_worker(sys, caf::actor_cast<caf::actor>(collector), wo));
    }
    caf::scoped_actor self{sys};
    // Every request first, then the answers in order (a blocking actor receives a
    // response only through its request's handle).
    std::vector<decltype(self->request(workers.front(), caf::infinite, run_atom::value,
                                       specs.front()))>
      pending;
    for (int32_t i = 0; i < n; ++i)
      pending.push_back(self->request(workers[static_cast<size_t>(i)], caf::infinite,
                                      run_atom::value, specs[static_cast<size_t>(i)]));
    for (int32_t i = 0; i < n; ++i)
      pending[static_cast<size_t>(i)].receive(
        [&](job_result& r) {
          caf::anon_send(collector, result_atom::value, r);
          results[static_cast<size_t>(i)] = std::move(r);
        },
        [&](caf::error& e) {
          job_result r;
          r.ok = false;
          r.error = sys.render(e);
          results[static_cast<size_t>(i)] = r;
        });
    self->request(collector, caf::infinite, done_atom::value)
      .receive([&](double mean) { report.cpu_utilization_mean = mean; }, [&](caf::error&) {});
    for (auto& w : workers)
      self->send_exit(w, caf::exit_reason::user_shutdown);
    self->send_exit(collector, caf::exit_reason::user_shutdown);
  }
  for (int32_t i = 0; i < n; ++i) {
    const auto& r = results[static_cast<size_t>(i)];
    if (!r.ok)
      throw pnn::error(error_code::run_failed,
                       "hogwild: " + worker_name(i) + " failed: " + r.error);
  }

  // Times relative to the start of training (the earliest worker's clock zero).
  double t0 = std::numeric_limits<double>::infinity(), t_end = 0;
  for (const auto& t : *traces)
    t0 = std::min(t0, t.zero);
  for (int32_t i = 0; i < n; ++i) {
    const auto& t = (*traces)[static_cast<size_t>(i)];
    hogwild_worker_report w;
    w.result = results[static_cast<size_t>(i)];
    w.steps = t.steps;
    for (auto& s : w.steps) {
      s.time += t.zero - t0;
      t_end = std::max(t_end, s.time);
    }
    w.samples = t.samples;
    report.workers.push_back(std::move(w));
  }
  report.train_seconds = t_end;
  int64_t samples = 0;
  double loss_sum = 0;
  for (const auto& w : report.workers) {
    samples += w.samples;
    loss_sum += w.result.train_loss * static_cast<double>(w.samples);
  }
  report.samples_per_second = static_cast<double>(samples) / std::max(t_end, 1e-9);
  report.final_train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, samples));

  // Test the master (the DistributedTester's files: confusion.csv, test.json).
  report.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  report.test_loss = std::numeric_limits<double>::quiet_NaN();
  if (o.test && data.test) {
    auto opts = job_options_from(specs.front());
    if (o.customize)
      o.customize(specs.front(), opts);
    use_intra_op_threads(cores);
    DistributedTester tester{data.test, o.out, o.test_batch_size};
    tester.transform() = opts.eval_transform;
    auto e = tester(*master);
    report.test_accuracy = e.accuracy;
    report.test_loss = e.loss;
    report.confusion = e.confusion;
  }

  // Loss against time: per worker and overall.
  {
    std::vector<const hogwild_worker_report*> traces_out;
    for (const auto& w : report.workers)
      traces_out.push_back(&w);
    write_loss_files(o.out, traces_out, o.loss_window);
  }
  {
    std::ostringstream bytes;
    torch::serialize::OutputArchive archive;
    master->save(archive);
    archive.save_to(bytes);
    write_file_atomic(o.out / "model.pt", bytes.str());
  }

  report.wall_seconds
    = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  const auto cpu_end = process_cpu_times();
  report.user_cpu_seconds = cpu_end.user_seconds - cpu_start.user_seconds;
  report.system_cpu_seconds = cpu_end.system_seconds - cpu_start.system_seconds;
  report.peak_rss_bytes = peak_rss_bytes();

  nlohmann::json workers = nlohmann::json::array();
  for (int32_t i = 0; i < n; ++i) {
    const auto& w = report.workers[static_cast<size_t>(i)];
    nlohmann::json losses = nlohmann::json::array();
    for (auto l : w.result.epoch_train_loss)
      losses.push_back(finite_or_null(l));
    workers.push_back({{"worker", i},
                       {"samples", w.samples},
                       {"steps", w.steps.size()},
                       {"started_at", w.steps.empty() ? 0.0 : w.steps.front().time},
                       {"finished_at", w.steps.empty() ? 0.0 : w.steps.back().time},
                       {"train_loss", finite_or_null(w.result.train_loss)},
                       {"epoch_train_loss", losses},
                       {"files", fs::relative(specs[static_cast<size_t>(i)].out_dir, o.out).string()}});
  }
  report.summary = detail::shared_summary("hogwild", report, o,
                                          {specs.front().dataset, model_name,
                                           models::parameter_count(*master), data.train->size(),
                                           data.test ? data.test->size() : 0, cores});
  report.summary.update({{"workers", n},
                         {"balance", n > 1 ? o.balance : "none"},
                         {"worker_list", workers}});
  write_file_atomic(o.out / "summary.json", report.summary.dump(2) + "\n");
  std::ostringstream md;
  char buf[256];
  md << "# pnn hogwild: " << model_name << " on " << specs.front().dataset << ", " << n
     << " worker(s)\n\n"
     << "| workers | epochs | test accuracy | final train loss | samples/s | training time | wall time |\n"
     << "|---|---|---|---|---|---|---|\n";
  std::snprintf(buf, sizeof buf, "| %d | %lld | %.4f | %.4f | %.0f | %.1f s | %.1f s |\n", n,
                static_cast<long long>(o.epochs), report.test_accuracy, report.final_train_loss,
                report.samples_per_second, report.train_seconds, report.wall_seconds);
  md << buf;
  std::snprintf(buf, sizeof buf, "\nMean CPU utilisation %.1f%%, CPU user %.1f s, system %.1f s.\n",
                100 * report.cpu_utilization_mean, report.user_cpu_seconds,
                report.system_cpu_seconds);
  md << buf;
  write_file_atomic(o.out / "summary.md", md.str());
  return report;
}

} // namespace pnn
