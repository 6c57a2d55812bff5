#include <pnn/actors/sgd.hpp>

#include <pnn/actors/cluster.hpp>
#include <pnn/actors/distributed.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/random.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/schedules.hpp>
#include <pnn/training/system.hpp>
#include "shared_run.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

namespace {

using detail::finite_or_null;

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

std::string worker_name(size_t i) {
  return "worker" + std::to_string(i);
}


/// Sends every spec to its worker (with the holder) and answers (run_atom) with
/// all results in worker order once each worker answered or went down; a worker
/// that went down gets a failed result "worker lost: <reason>". Every result is
/// also sent to `sink` as it comes.
caf::behavior gather_results(caf::event_based_actor* self, std::vector<worker_actor> workers,
                             std::vector<job_spec> specs, caf::actor holder, caf::actor sink) {
  struct state {
    std::vector<job_result> results;
    std::vector<char> done;
    size_t remaining = 0;
    caf::response_promise promise;
  };
  auto st = std::make_shared<state>();
  st->results.resize(workers.size());
  st->done.assign(workers.size(), 0);
  st->remaining = workers.size();
  auto settle = [self, st, sink](size_t i, job_result r) {
    if (st->done[i])
      return;
    st->done[i] = 1;
    caf::anon_send(sink, result_atom::value, r);
    st->results[i] = std::move(r);
    if (--st->remaining == 0) {
      st->promise.deliver(st->results);
      self->quit();
    }
  };
  auto lost = [specs](size_t i, const std::string& why) {
    job_result r;
    r.id = specs[i].id;
    r.ok = false;
    r.error = "worker lost: " + why;
    return r;
  };
  self->set_down_handler([self, st, workers, settle, lost](const caf::down_msg& msg) {
    for (size_t i = 0; i < workers.size(); ++i)
      if (workers[i].address() == msg.source)
        settle(i, lost(i, self->system().render(msg.reason)));
  });
  return {
    [=](run_atom) {
      st->promise = self->make_response_promise();
      if (workers.empty()) {
        st->promise.deliver(st->results);
        self->quit();
        return;
      }
      for (size_t i = 0; i < workers.size(); ++i) {
        self->monitor(workers[i]);
        self->request(workers[i], caf::infinite, run_atom::value, specs[i], holder)
          .then([=](job_result& r) { settle(i, std::move(r)); },
                [=](caf::error& e) { settle(i, lost(i, self->system().render(e))); });
      }
    },
  };
}

} // namespace

void validate(const sgd_options& o) {
  detail::validate_shared("sgd", o);
  for (const auto& h : o.hosts)
    parse_host_port(h, "--hosts");
  if (!o.use_local && o.hosts.empty())
    bad("--no-local: expected --hosts h:p,... to run the workers on");
  if (o.slots < 0 || o.slots > 1024)
    bad("--slots " + std::to_string(o.slots) + ": expected 1..1024 (0: one per core)");
  if (o.n_push < 1)
    bad("--n-push " + std::to_string(o.n_push) + ": expected at least 1 (steps between pushes)");
  if (o.n_pull < 1)
    bad("--n-pull " + std::to_string(o.n_pull) + ": expected at least 1 (steps between pulls)");
  if (o.max_pushes < 1 || o.max_pushes > 1024)
    bad("--max-pushes " + std::to_string(o.max_pushes) + ": expected 1..1024");
  if (!(o.holder_timeout > 0))
    bad("--holder-timeout " + std::to_string(o.holder_timeout) + ": expected seconds > 0");
  if (!(o.connect_timeout > 0))
    bad("--connect-timeout " + std::to_string(o.connect_timeout) + ": expected seconds > 0");
  if (!(o.peer_timeout >= 1))
    bad("--peer-timeout " + std::to_string(o.peer_timeout) + ": expected seconds >= 1");
  check_tls(o.tls);
  if (o.holder_checkpoint_every < 0)
    bad("--holder-checkpoint-every " + std::to_string(o.holder_checkpoint_every)
        + ": expected 0 (never) or more updates");
}

sgd_report run_sgd(const sgd_options& o) {
  validate(o);
  const auto wall_start = std::chrono::steady_clock::now();
  const auto cpu_start = process_cpu_times();
  const int32_t cores = o.cores > 0 ? o.cores : available_cores();
  const int32_t local = o.use_local ? (o.slots > 0 ? o.slots : cores) : 0;
  ensure_directory(o.out);

  // This host's copy of the data: the model's shape, local workers, the test.
  dataset_pair data;
  if (o.train_data) {
    data.train = o.train_data;
    data.test = o.test_data;
  } else {
    data = shared_dataset(o.dataset, o.data_dir, o.subset);
    if (o.test_data)
      data.test = o.test_data;
  }
  std::shared_ptr<models::Network> model = o.initial_model;
  if (!model)
    model = make_seeded_model(o.model, data.train->channels(), data.train->num_classes(), o.seed);
  const std::string model_name = model->registry_name();
  // --resume: the holder's last checkpoint, for this very model.
  std::optional<param_blob> restart;
  if (o.resume && fs::exists(o.out / "holder.pt")) {
    restart = read_holder_file(o.out / "holder.pt");
    if (restart->layout != layout_hash(*model) || restart->count != static_cast<uint64_t>(parameter_floats(*model)))
      bad((o.out / "holder.pt").string() + ": parameters of another model than " + model_name);
  }
  const std::string dataset_name
    = o.train_data && !o.train_data->name.empty() ? o.train_data->name : o.dataset;

  sgd_report report;
  report.model = model;
  std::vector<job_spec> specs;
  std::vector<job_result> results;
  std::vector<std::string> hosts_of;
  std::vector<char> lost; // a worker whose host (or actor) went away mid-run
  {
    caf::actor_system_config cfg;
    configure_actor_system(cfg, static_cast<size_t>(std::max(1, std::min(cores, std::max(1, local)))));
    if (!o.hosts.empty())
      configure_network(cfg, o.peer_timeout, o.tls);
    caf::actor_system sys{cfg};
    Cluster cluster{sys, o.connect_timeout, "--hosts"};
    // Every host first: one that cannot be reached stops the run before any work.
    for (const auto& h : o.hosts)
      cluster.connect(h);
    collector_options co;
    co.out_dir = o.out;
    co.progress = o.progress;
    {
      // Progress labels, in the order the workers are started below.
      uint32_t id = 0;
      for (const auto& node : cluster.nodes())
        for (int32_t s = 0; s < node.info.slots; ++s, ++id)
          co.labels[id] = worker_name(id) + "@" + node.info.host;
      for (int32_t s = 0; s < local; ++s, ++id)
        co.labels[id] = worker_name(id) + "@local";
      co.total_jobs = id;
      for (uint32_t i = 0; i < id; ++i)
        co.costs[i] = 1;
    }
    auto collector = sys.spawn(metric_collector, co);
    auto sink = caf::actor_cast<caf::actor>(collector);
    std::vector<worker_actor> workers;
    auto stop_all = [&] {
      cluster.shutdown();
      caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
    };
    try {
      for (const auto& node : cluster.nodes())
        for (auto& w : cluster.spawn_workers(node, sink)) {
          workers.push_back(w);
          hosts_of.push_back(node.info.host);
        }
    } catch (const pnn::error&) {
      stop_all();
      throw;
    }
    worker_options wo;
    // Every worker hands its record files back (this host's too), so the
    // coordinator writes them all the same way.
    wo.remote = true;
    wo.customize = o.customize;
    wo.train_data = o.train_data;
    wo.host = "local";
    for (auto& w : cluster.spawn_local_workers(local, sink, wo)) {
      workers.push_back(w);
      hosts_of.push_back("local");
    }
    const size_t n = workers.size();
    if (static_cast<int64_t>(n) > data.train->size()) {
      stop_all();
      bad("sgd: " + std::to_string(n) + " workers but only " + std::to_string(data.train->size())
          + " training samples");
    }
    for (size_t i = 0; i < n; ++i) {
      job_spec s;
      s.id = static_cast<uint32_t>(i);
      s.model = model_name;
      s.scheduler = o.scheduler;
      s.optimizer = o.optimizer;
      s.lr = o.lr;
      s.dataset = dataset_name;
      s.data_dir = o.data_dir;
      s.subset = o.subset;
      s.shards = static_cast<int32_t>(n);
      s.shard = static_cast<int32_t>(i);
      s.split_seed = o.shard_seed;
      s.seed = i == 0 ? o.seed : derive_seed(o.seed, static_cast<uint64_t>(i));
      s.epochs = o.epochs;
      s.batch_size = o.batch_size;
      s.threads = o.threads_per_worker;
      s.n_pull = o.n_pull;
      s.n_push = o.n_push;
      s.max_pushes = o.max_pushes;
      s.holder_timeout = o.holder_timeout;
      specs.push_back(s);
    }
    holder_options ho;
    ho.checkpoint_every = static_cast<uint64_t>(o.holder_checkpoint_every);
    ho.checkpoint_file = o.out / "holder.pt";
    std::unique_ptr<ParameterHolder> holder_ptr;
    if (restart) {
      load_parameter_bytes(*model, restart->bytes);
      holder_ptr = std::make_unique<ParameterHolder>(sys, *restart, ho);
    } else {
      holder_ptr = std::make_unique<ParameterHolder>(sys, *model, ho);
    }
    ParameterHolder& holder = *holder_ptr;
    if (o.on_holder)
      o.on_holder(holder);
    auto holder_handle = caf::actor_cast<caf::actor>(holder.handle());
    caf::scoped_actor self{sys};
    // A request to a worker on a host that dies is never answered (the message
    // already left): the gatherer monitors every worker and turns its down message
    // into a "worker lost" result.
    auto gatherer = sys.spawn(gather_results, workers, specs, holder_handle,
                              caf::actor_cast<caf::actor>(collector));
    self->request(gatherer, caf::infinite, run_atom::value)
      .receive([&](std::vector<job_result>& r) { results = std::move(r); },
               [&](caf::error& e) {
                 results.assign(n, job_result{});
                 for (auto& r : results)
                   r.error = "worker lost: " + sys.render(e);
               });
    lost.assign(n, 0);
    for (size_t i = 0; i < n; ++i)
      lost[i] = !results[i].ok && results[i].error.rfind("worker lost", 0) == 0;
    report.holder = holder.status();
    report.rejected_updates = report.holder.rejected;
    const auto final_version = holder.load_into(*model);
    if (o.holder_checkpoint_every > 0) {
      // The end state, whatever the last multiple of holder_checkpoint_every was.
      param_blob last;
      last.version = final_version;
      last.layout = layout_hash(*model);
      last.bytes = parameter_bytes(*model);
      last.count = last.bytes.size() / sizeof(float);
      write_holder_file(o.out / "holder.pt", last);
    }
    self->request(collector, caf::infinite, done_atom::value)
      .receive([&](double mean) { report.cpu_utilization_mean = mean; }, [&](caf::error&) {});
    holder.stop();
    stop_all();
  }

  // The workers' records, into workers/worker<i>/, and their steps on one clock.
  double t0 = std::numeric_limits<double>::infinity(), t_end = 0;
  for (const auto& r : results)
    if (r.clock_zero > 0)
      t0 = std::min(t0, r.clock_zero);
  if (!std::isfinite(t0))
    t0 = 0;
  int64_t samples = 0;
  double loss_sum = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    auto& r = results[i];
    sgd_worker_report w;
    w.host = hosts_of[i];
    const fs::path dir = o.out / "workers" / worker_name(i);
    for (size_t f = 0; f < r.file_names.size() && f < r.file_contents.size(); ++f) {
      const auto& name = r.file_names[f];
      if (name.empty() || name.find('/') != std::string::npos || name.find("..") != std::string::npos)
        continue; // a file name that is not a plain name is never written
      write_file_atomic(dir / name, r.file_contents[f]);
      if (name == "metrics.json") {
        auto j = nlohmann::json::parse(r.file_contents[f], nullptr, false);
        if (j.is_object() && j.contains("steps") && j["steps"].is_array())
          for (const auto& s : j["steps"]) {
            auto step = step_from_json(s);
            step.time += r.clock_zero - t0;
            t_end = std::max(t_end, step.time);
            w.steps.push_back(step);
          }
      }
    }
    r.file_contents.clear();
    w.samples = r.samples;
    w.result = r;
    samples += r.samples;
    loss_sum += r.train_loss * static_cast<double>(r.samples);
    report.workers.push_back(std::move(w));
  }
  report.train_seconds = t_end;
  report.samples_per_second = static_cast<double>(samples) / std::max(t_end, 1e-9);
  report.final_train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, samples));
  {
    std::vector<const hogwild_worker_report*> traces;
    for (const auto& w : report.workers)
      traces.push_back(&w);
    write_loss_files(o.out, traces, o.loss_window);
  }

  report.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  report.test_loss = std::numeric_limits<double>::quiet_NaN();
  // The holder keeps parameters only: BatchNorm statistics of the trained
  // parameters come from (up to 10,240 samples of) this host's training data.
  int64_t bn_layers = 0, bn_samples = 0;
  if (!specs.empty()) {
    auto opts = job_options_from(specs.front());
    if (o.customize)
      o.customize(specs.front(), opts);
    use_intra_op_threads(cores);
    auto sample = all_indices(data.train->size());
    sample.resize(static_cast<size_t>(std::min<int64_t>(data.train->size(), 10240)));
    bn_layers = recompute_batchnorm_statistics(*model, *data.train, sample, opts.eval_transform);
    if (bn_layers > 0)
      bn_samples = static_cast<int64_t>(sample.size());
  }
  if (o.test && data.test && !specs.empty()) {
    auto opts = job_options_from(specs.front());
    if (o.customize)
      o.customize(specs.front(), opts);
    DistributedTester tester{data.test, o.out, o.test_batch_size};
    tester.transform() = opts.eval_transform;
    auto e = tester(*model);
    report.test_accuracy = e.accuracy;
    report.test_loss = e.loss;
    report.confusion = e.confusion;
  }
  {
    std::ostringstream bytes;
    torch::serialize::OutputArchive archive;
    model->save(archive);
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
  std::vector<std::string> failures, lost_workers;
  size_t finished = 0;
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& w = report.workers[i];
    const auto& r = w.result;
    if (r.ok)
      ++finished;
    else if (lost[i])
      lost_workers.push_back(worker_name(i) + "@" + w.host);
    else
      failures.push_back(worker_name(i) + "@" + w.host + ": " + r.error);
    workers.push_back({{"worker", i},
                       {"host", w.host},
                       {"slot", r.slot},
                       {"ok", r.ok},
                       {"error", r.error},
                       {"samples", r.samples},
                       {"steps", w.steps.size()},
                       {"pulls", r.pulls},
                       {"pushes", r.pushes},
                       {"rejected_pushes", r.rejected_pushes},
                       {"started_at", w.steps.empty() ? 0.0 : w.steps.front().time},
                       {"finished_at", w.steps.empty() ? 0.0 : w.steps.back().time},
                       {"train_loss", finite_or_null(r.train_loss)},
                       {"files", (fs::path("workers") / worker_name(i)).string()}});
  }
  std::vector<std::string> host_list;
  for (const auto& h : hosts_of)
    if (std::find(host_list.begin(), host_list.end(), h) == host_list.end())
      host_list.push_back(h);
  report.summary = detail::shared_summary("sgd", report, o,
                                          {dataset_name, model_name,
                                           models::parameter_count(*model), data.train->size(),
                                           data.test ? data.test->size() : 0, cores});
  report.summary.update({{"rejected_updates", report.rejected_updates},
                         {"holder",
                          {{"version", report.holder.version},
                           {"applied", report.holder.applied},
                           {"rejected", report.holder.rejected},
                           {"pulls", report.holder.pulls}}},
                         {"workers", report.workers.size()},
                         {"local_workers", local},
                         {"hosts", host_list},
                         {"n_push", o.n_push},
                         {"n_pull", o.n_pull},
                         {"max_pushes", o.max_pushes},
                         {"resumed_from_version", restart ? restart->version : 0},
                         {"batchnorm_layers", bn_layers},
                         {"batchnorm_statistics_samples", bn_samples},
                         {"failed_workers", failures},
                         {"lost_workers", lost_workers},
                         {"worker_list", workers}});
  write_file_atomic(o.out / "summary.json", report.summary.dump(2) + "\n");
  std::ostringstream md;
  char buf[320];
  md << "# pnn sgd: " << model_name << " on " << dataset_name << ", " << report.workers.size()
     << " worker(s) on " << host_list.size() << " host(s), n_push " << o.n_push << ", n_pull "
     << o.n_pull << "\n\n"
     << "| workers | epochs | test accuracy | final train loss | samples/s | updates applied | rejected | training time | wall time |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  std::snprintf(buf, sizeof buf, "| %zu | %lld | %.4f | %.4f | %.0f | %llu | %llu | %.1f s | %.1f s |\n",
                report.workers.size(), static_cast<long long>(o.epochs), report.test_accuracy,
                report.final_train_loss, report.samples_per_second,
                static_cast<unsigned long long>(report.holder.applied),
                static_cast<unsigned long long>(report.rejected_updates), report.train_seconds,
                report.wall_seconds);
  md << buf;
  md << "\n| worker | host | samples | pulls | pushes | rejected pushes |\n|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& w = report.workers[i];
    md << "| " << worker_name(i) << " | " << w.host << " | " << w.result.samples << " | "
       << w.result.pulls << " | " << w.result.pushes << " | " << w.result.rejected_pushes
       << " |\n";
  }
  write_file_atomic(o.out / "summary.md", md.str());
  if (!lost_workers.empty())
    std::fprintf(stderr, "pnn sgd: %zu worker(s) lost during the run (%s%s); the others finished\n",
                 lost_workers.size(), lost_workers.front().c_str(),
                 lost_workers.size() > 1 ? ", ..." : "");
  if (finished == 0 && failures.empty())
    throw pnn::error(error_code::run_failed, "sgd: every worker was lost");
  if (!failures.empty())
    throw pnn::error(error_code::run_failed, "sgd: " + failures.front()
                                               + (failures.size() > 1
                                                    ? " (and " + std::to_string(failures.size() - 1)
                                                        + " more; see summary.json)"
                                                    : ""));
  return report;
}

} // namespace pnn
