// Distributed SGD through the parameter holder on this machine, the same total
// number of workers placed three ways, so that the difference is what CAF's network
// layer costs:
//   in_process: the holder and 2 workers in this process (messages, no sockets);
//   one_host:   2 workers in one `pnn-node serve --slots 2` process, the holder here;
//   two_hosts:  1 worker in each of two `pnn-node serve --slots 1` processes, pulls
//               and pushes through the coordinator's bulk port (--bulk-bind auto);
//   two_hosts_caf: the same through CAF's network layer only (--bulk-bind off).
// LeNet5 on a Fashion-MNIST subset, n_push = n_pull = 5, 1 intra-op thread per
// worker. Modes alternate within each round (order rotated) because this VM's speed
// drifts; serve processes start before and stop after each run. Prints JSON: samples/s
// per mode (median and every round), the ratios to in_process, test accuracy,
// updates applied, CPU utilisation.
//
// usage: bench_sgd [--subset N] [--epochs E] [--rounds R] [--n-push N] [--n-pull N]
//                  [--dataset D] [--out DIR]
#include <pnn/experiments/sgd.hpp>
#include <pnn/system.hpp>
#include "serve_process.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace pnn;
using pnn::bench::serve_process;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty())
    return NAN;
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct measured {
  std::vector<double> samples_per_second, train_seconds, test_accuracy, cpu_utilization, applied,
    wall_seconds;
};

} // namespace

int main(int argc, char** argv) {
  pnn::configure_allocator();
  std::string dataset = "fashion-mnist";
  int64_t subset = 30000, epochs = 2;
  int rounds = 3, n_push = 5, n_pull = 5;
  std::filesystem::path out = std::filesystem::temp_directory_path() / "pnn-bench-sgd";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--subset")
      subset = std::stoll(value);
    else if (flag == "--epochs")
      epochs = std::stoll(value);
    else if (flag == "--rounds")
      rounds = std::stoi(value);
    else if (flag == "--n-push")
      n_push = std::stoi(value);
    else if (flag == "--n-pull")
      n_pull = std::stoi(value);
    else if (flag == "--dataset")
      dataset = value;
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_sgd: unknown flag " << flag << "\n";
      return 2;
    }
  }
  const std::vector<std::string> modes{"in_process", "one_host", "two_hosts", "two_hosts_caf"};
  std::vector<measured> m(modes.size());
  for (int round = 0; round < rounds; ++round) {
    for (size_t k = 0; k < modes.size(); ++k) {
      const size_t mode = (k + static_cast<size_t>(round)) % modes.size();
      sgd_options o;
      o.dataset = dataset;
      o.subset = subset;
      o.model = "lenet5";
      o.optimizer = "adam";
      o.lr = 1e-3;
      o.scheduler = "none";
      o.epochs = epochs;
      o.batch_size = 32;
      o.n_push = n_push;
      o.n_pull = n_pull;
      o.threads_per_worker = 1;
      o.progress = "none";
      o.out = out / (modes[mode] + "_r" + std::to_string(round));
      std::vector<std::unique_ptr<serve_process>> servers;
      if (modes[mode] == "in_process") {
        o.slots = 2;
      } else if (modes[mode] == "one_host") {
        servers.push_back(std::make_unique<serve_process>(2));
        o.use_local = false;
      } else {
        servers.push_back(std::make_unique<serve_process>(1));
        servers.push_back(std::make_unique<serve_process>(1));
        o.use_local = false;
        if (modes[mode] == "two_hosts_caf")
          o.bulk_bind = "off";
      }
      for (const auto& s : servers)
        o.hosts.push_back(s->address());
      auto r = run_sgd(o);
      servers.clear();
      auto& x = m[mode];
      x.samples_per_second.push_back(r.samples_per_second);
      x.train_seconds.push_back(r.train_seconds);
      x.test_accuracy.push_back(r.test_accuracy);
      x.cpu_utilization.push_back(r.cpu_utilization_mean);
      x.applied.push_back(static_cast<double>(r.holder.applied));
      x.wall_seconds.push_back(r.wall_seconds);
      std::cerr << "round " << round + 1 << "/" << rounds << ", " << modes[mode] << ": "
                << r.samples_per_second << " samples/s, test accuracy " << r.test_accuracy << ", "
                << r.holder.applied << " updates\n";
    }
  }
  nlohmann::json result{{"bench", "sgd"},     {"model", "lenet5"},
                        {"dataset", dataset}, {"subset", subset},
                        {"epochs", epochs},   {"batch_size", 32},
                        {"workers", 2},       {"n_push", n_push},
                        {"n_pull", n_pull},   {"optimizer", "adam lr 1e-3, no schedule"},
                        {"rounds", rounds},   {"cores", pnn::available_cores()}};
  for (size_t i = 0; i < modes.size(); ++i) {
    const auto& x = m[i];
    result[modes[i]] = {{"samples_per_second_median", median(x.samples_per_second)},
                        {"samples_per_second", x.samples_per_second},
                        {"train_seconds_median", median(x.train_seconds)},
                        {"wall_seconds_median", median(x.wall_seconds)},
                        {"test_accuracy_median", median(x.test_accuracy)},
                        {"updates_applied_median", median(x.applied)},
                        {"cpu_utilization_median", median(x.cpu_utilization)}};
  }
  const double base = median(m[0].samples_per_second);
  result["samples_per_second_ratio_one_host_vs_in_process"] =
    median(m[1].samples_per_second) / base;
  result["samples_per_second_ratio_two_hosts_vs_in_process"] =
    median(m[2].samples_per_second) / base;
  result["network_cost_percent_two_hosts"] = 100 * (1 - median(m[2].samples_per_second) / base);
  result["samples_per_second_ratio_bulk_vs_caf_two_hosts"] =
    median(m[2].samples_per_second) / median(m[3].samples_per_second);
  std::cout << result.dump(2) << std::endl;
  return 0;
}
