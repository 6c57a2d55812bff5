// The scale harness: N `pnn-node serve` processes on this machine (127.0.0.1, one slot
// each) under one coordinator (this process), for N = 1, 2, 4, 8, 16:
//   kfold: a grid of tiny synthetic jobs (J per host, 8 unless told), with
//          --no-local: dispatcher jobs/s, the coordinator's share of the CPU time
//          spent during the run (this process against the serve processes, from
//          /proc after their start-up), and, in a second run with N >= 2 and twice
//          the jobs, the time from one serve process's kill -9 (a quarter through)
//          to its lost job starting again on another host (the first job started
//          after the kill whose id is below one started before it: jobs start in id
//          order and a lost one goes back to the queue's front; the time includes
//          waiting for a slot to free);
//   sgd:   W workers (one per serve process, W in --sgd-workers) x holder shards S
//          (--sgd-shards, on the coordinator): holder updates/s, MB/s through the
//          holders (pulls and pushes), samples/s, test accuracy at equal epochs.
// Every figure comes from one run of this program; the machine's cores are shared
// by all N processes, so per-host throughput falls as N grows: the harness shows
// what the coordinator and the network layer cost, not the speed of N machines.
// Prints JSON.
//
// usage: bench_scale [--sizes 1,2,4,8,16] [--jobs-per-host J] [--sgd-workers 8,16]
//                    [--sgd-shards 1,2,4] [--sgd-subset N] [--out DIR] [--skip-kill]
#include <pnn/experiments/kfold.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/system.hpp>
#include "serve_process.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <sys/time.h>

using namespace pnn;
using pnn::bench::serve_process;
namespace fs = std::filesystem;

namespace {

double seconds_of(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

/// CPU seconds (user + system) of this process, and of the serve processes so far.
std::pair<double, double> cpu_now(const std::vector<std::unique_ptr<serve_process>>& servers) {
  rusage self{};
  ::getrusage(RUSAGE_SELF, &self);
  double theirs = 0;
  for (const auto& s : servers)
    theirs += s->cpu_seconds();
  return {seconds_of(self.ru_utime) + seconds_of(self.ru_stime), theirs};
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

std::vector<int> int_list(const std::string& text) {
  std::vector<int> out;
  std::istringstream in{text};
  for (std::string n; std::getline(in, n, ',');)
    out.push_back(std::stoi(n));
  return out;
}

std::vector<std::unique_ptr<serve_process>> start_servers(int n) {
  std::vector<std::unique_ptr<serve_process>> s;
  for (int i = 0; i < n; ++i)
    s.push_back(std::make_unique<serve_process>(1));
  return s;
}

/// A grid of `jobs` tiny jobs (lrs x 4 folds) on the serve processes only.
kfold_options tiny_grid(int jobs, const fs::path& out) {
  kfold_options o;
  o.dataset = "synthetic:train=256,test=16";
  o.models = {"lenet5"};
  o.schedulers = {"none"};
  o.folds = 4;
  for (int i = 0; i < std::max(1, jobs / o.folds); ++i)
    o.lrs.push_back(1e-3 * (1 + i));
  o.epochs = 1;
  o.batch_size = 32;
  o.validate_every = 0;
  o.estimate_costs = false;
  o.use_local = false;
  o.progress = "none";
  o.out = out;
  return o;
}

/// `kill_after` > 0: the last host gets kill -9 that many seconds in.
nlohmann::json kfold_size(int n, int jobs_per_host, const fs::path& out, double kill_after) {
  const bool kill = kill_after > 0;
  auto servers = start_servers(n);
  auto o = tiny_grid(jobs_per_host * n, out);
  for (const auto& s : servers)
    o.hosts.push_back(s->address());
  nlohmann::json r{{"hosts", n}};
  std::atomic<double> killed_at{0};
  std::thread killer;
  const auto before = cpu_now(servers); // after their start-up
  const double t0 = wall_now();
  if (kill) {
    killer = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::duration<double>(kill_after));
      killed_at = wall_now();
      servers.back()->kill_hard();
    });
  }
  struct joined { // also when run_kfold throws
    std::thread& t;
    ~joined() {
      if (t.joinable())
        t.join();
    }
  };
  kfold_report report;
  {
    joined guard{killer};
    report = run_kfold(o);
  }
  const double wall = wall_now() - t0;
  const auto after = cpu_now(servers); // (a killed one is a zombie: its times stay)
  servers.clear();
  const double mine = after.first - before.first;
  const double theirs = after.second - before.second;
  int ok = 0;
  for (const auto& j : report.jobs)
    ok += j.ok() ? 1 : 0;
  r["jobs"] = report.jobs.size();
  r["jobs_ok"] = ok;
  r["wall_seconds"] = wall;
  r["jobs_per_second"] = static_cast<double>(report.jobs.size()) / wall;
  r["coordinator_cpu_seconds"] = mine;
  r["serve_cpu_seconds"] = theirs;
  r["coordinator_cpu_share"] = mine / std::max(1e-9, mine + theirs);
  if (kill) {
    // The lost jobs: started after the kill with an id below one that had started
    // before it (jobs start in id order; a lost one goes back to the queue's front).
    // The time from the kill to the first of them starting again elsewhere.
    uint32_t started_before = 0;
    for (const auto& j : report.jobs)
      if (j.started_at < killed_at)
        started_before = std::max(started_before, j.id);
    double first = std::numeric_limits<double>::infinity();
    int lost = 0;
    for (const auto& j : report.jobs)
      if (j.started_at >= killed_at && j.id < started_before) {
        ++lost;
        first = std::min(first, j.started_at);
      }
    r["killed_at_seconds"] = killed_at - t0;
    r["lost_jobs_restarted"] = lost;
    r["kill_to_lost_job_restart_seconds"] =
      std::isfinite(first) ? nlohmann::json(first - killed_at) : nlohmann::json(nullptr);
  }
  std::cerr << "kfold, " << n << " host(s)" << (kill ? " with a kill -9" : "") << ": "
            << report.jobs.size() << " jobs (" << ok << " ok) in " << wall << " s\n";
  return r;
}

nlohmann::json sgd_size(int workers, int shards, int64_t subset, const fs::path& out) {
  auto servers = start_servers(workers);
  sgd_options o;
  o.dataset = "fashion-mnist";
  o.subset = subset;
  o.model = "lenet5";
  o.optimizer = "adam";
  o.lr = 1e-3;
  o.scheduler = "cosine";
  o.epochs = 1;
  o.batch_size = 32;
  o.n_push = 5;
  o.n_pull = 5;
  o.holder_shards = shards;
  o.threads_per_worker = 1;
  o.use_local = false;
  o.progress = "none";
  o.out = out;
  for (const auto& s : servers)
    o.hosts.push_back(s->address());
  auto r = run_sgd(o);
  servers.clear();
  const uint64_t param_bytes =
    r.holder_bounds.empty() ? 0 : r.holder_bounds.back() * sizeof(float);
  int64_t pulls = 0, pushed = 0, bulk = 0;
  for (const auto& w : r.workers) {
    pulls += w.result.sgd.pulls;
    pushed += w.result.sgd.pushed_bytes;
    bulk += w.result.sgd.bulk_requests;
  }
  const double moved = static_cast<double>(pulls) * static_cast<double>(param_bytes)
    + static_cast<double>(pushed);
  const double t = std::max(1e-9, r.train_seconds);
  std::cerr << "sgd, " << workers << " workers, " << shards << " shard(s): "
            << r.samples_per_second << " samples/s, test accuracy " << r.test_accuracy << "\n";
  return {{"workers", workers},
          {"shards", shards},
          {"train_seconds", r.train_seconds},
          {"samples_per_second", r.samples_per_second},
          {"updates_applied", r.holder.applied},
          {"updates_per_second", static_cast<double>(r.holder.applied) / t},
          {"megabytes_per_second", moved / t / 1e6},
          {"bulk_requests", bulk},
          {"test_accuracy", r.test_accuracy},
          {"workers_ok", std::count_if(r.workers.begin(), r.workers.end(),
                                       [](const auto& w) { return w.result.ok(); })}};
}

} // namespace

int main(int argc, char** argv) {
  pnn::configure_allocator();
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<int> sizes{1, 2, 4, 8, 16}, sgd_workers{8, 16}, sgd_shards{1, 2, 4};
  int jobs_per_host = 8;
  int64_t sgd_subset = 16000;
  bool kill = true;
  fs::path out = fs::temp_directory_path() / "pnn-bench-scale";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--skip-kill") {
      kill = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::cerr << "bench_scale: " << flag << " needs a value\n";
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--sizes")
      sizes = int_list(value);
    else if (flag == "--jobs-per-host")
      jobs_per_host = std::stoi(value);
    else if (flag == "--sgd-workers")
      sgd_workers = int_list(value);
    else if (flag == "--sgd-shards")
      sgd_shards = int_list(value);
    else if (flag == "--sgd-subset")
      sgd_subset = std::stoll(value);
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_scale: unknown flag " << flag << "\n";
      return 2;
    }
  }
  try {
    fs::remove_all(out);
    auto kfold = nlohmann::json::array();
    for (int n : sizes) {
      auto row = kfold_size(n, jobs_per_host, out / ("kfold_" + std::to_string(n)), 0);
      if (kill && n >= 2) // twice the jobs, the kill a quarter through (half the run above)
        row["kill"] = kfold_size(n, 2 * jobs_per_host, out / ("kfold_kill_" + std::to_string(n)),
                                 0.5 * row["wall_seconds"].get<double>());
      kfold.push_back(row);
    }
    auto sgd = nlohmann::json::array();
    for (int w : sgd_workers)
      for (int s : sgd_shards)
        sgd.push_back(sgd_size(w, s, sgd_subset,
                               out / ("sgd_" + std::to_string(w) + "_" + std::to_string(s))));
    nlohmann::json result{
      {"bench", "scale"},
      {"machine_cores", pnn::available_cores()},
      {"serve", "pnn-node serve --slots 1 per host, 127.0.0.1"},
      {"kfold",
       {{"what", "synthetic 256 images, lenet5, 1 epoch, 4 folds, jobs_per_host x N jobs"},
        {"jobs_per_host", jobs_per_host},
        {"runs", kfold}}},
      {"sgd",
       {{"what", "fashion-mnist first " + std::to_string(sgd_subset)
                   + " images, lenet5, adam 1e-3, cosine, 1 epoch, batch 32, n_push = n_pull = 5, "
                     "one worker per serve process, shards on the coordinator"},
        {"runs", sgd}}}};
    std::cout << result.dump(2) << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_scale: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
