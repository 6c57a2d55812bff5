// K-fold speed: LeNet5 + AlexNet x cosine, warm x K=2 on a Fashion-MNIST subset,
// run three ways by pnn-node (one process each, so peak RSS is per mode):
//   serial          one job at a time, all cores as intra-op threads (--serial)
//   one_at_a_time   one job at a time, 1 thread (--slots 1 --threads-per-job 1)
//   parallel        one job per core, 1 thread each, idle cores to the tail (default)
// Prints JSON: wall time, speedups, CPU utilisation, user/system CPU seconds, peak
// RSS and per-job validation accuracy of each mode.
//
// usage: bench_kfold [--subset N] [--epochs E] [--out DIR]
#include <pnn/models/registry.hpp>
#include <pnn/models/network.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::string subset = "12000", epochs = "2";
  fs::path out = fs::temp_directory_path() / "pnn-bench-kfold";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--subset")
      subset = argv[i + 1];
    else if (flag == "--epochs")
      epochs = argv[i + 1];
    else if (flag == "--out")
      out = argv[i + 1];
  }
  fs::remove_all(out);
  const std::string common = std::string{PNN_NODE_PATH} + " kfold --dataset fashion-mnist --subset "
    + subset
    + " --models lenet5,alexnet --schedulers cosine,warm --folds 2"
      " --epochs "
    + epochs + " --batch-size 32 --progress none";
  const std::pair<const char*, const char*> modes[] = {
    {"serial", "--serial"},
    {"one_at_a_time", "--slots 1 --threads-per-job 1"},
    {"parallel", ""},
  };
  nlohmann::json result;
  result["benchmark"] = "kfold";
  result["workload"] = "fashion-mnist subset " + subset + ", lenet5+alexnet x cosine,warm, K=2, "
    + epochs + " epochs, batch 32";
  for (auto [name, flags] : modes) {
    auto dir = out / name;
    auto cmd =
      common + " " + flags + " --out " + dir.string() + " > " + (out / name).string() + ".log 2>&1";
    fs::create_directories(out);
    if (std::system(cmd.c_str()) != 0) {
      std::cerr << "bench_kfold: " << name << " run failed, see " << (out / name).string()
                << ".log\n";
      return 1;
    }
    std::ifstream in(dir / "summary.json");
    auto s = nlohmann::json::parse(in);
    nlohmann::json accuracy = nlohmann::json::object();
    for (const auto& j : s["jobs"])
      accuracy[j["model"].get<std::string>() + "/" + j["scheduler"].get<std::string>() + "/fold"
               + std::to_string(j["fold"].get<int>())] = j["val_accuracy"];
    result[name] = {{"wall_seconds", s["wall_seconds"]},
                    {"cpu_utilization_mean", s["cpu_utilization_mean"]},
                    {"user_cpu_seconds", s["user_cpu_seconds"]},
                    {"system_cpu_seconds", s["system_cpu_seconds"]},
                    {"peak_rss_bytes", s["peak_rss_bytes"]},
                    {"slots", s["slots"]},
                    {"threads_per_job", s["threads_per_job"]},
                    {"val_accuracy", accuracy}};
  }
  auto wall = [&](const char* m) { return result[m]["wall_seconds"].get<double>(); };
  result["speedup_parallel_vs_one_at_a_time"] = wall("one_at_a_time") / wall("parallel");
  result["speedup_parallel_vs_serial"] = wall("serial") / wall("parallel");
  double max_diff = 0;
  for (auto& [job, acc] : result["parallel"]["val_accuracy"].items())
    max_diff = std::max(
      max_diff, std::abs(acc.get<double>() - result["serial"]["val_accuracy"][job].get<double>()));
  result["max_accuracy_difference_parallel_vs_serial"] = max_diff;
  // Memory bound: one dataset copy + each running job's model, gradients and Adam
  // state (4 copies of the parameters) + 300 MiB.
  const double dataset_bytes = 70000.0 * 28 * 28 + 70000.0 * 8;
  double state_bytes = 0;
  for (const char* m : {"lenet5", "alexnet"})
    state_bytes += 4.0 * 4.0
      * static_cast<double>(pnn::models::parameter_count(*pnn::models::make_model(m, 1, 10)));
  // Two jobs run at once; the two largest are AlexNet's.
  const double bound = dataset_bytes + 2 * state_bytes + 300.0 * (1 << 20);
  result["peak_rss_bound_bytes"] = bound;
  result["parallel_peak_rss_within_bound"] =
    result["parallel"]["peak_rss_bytes"].get<double>() <= bound;
  result["targets"] = {{"speedup_parallel_vs_one_at_a_time_min", 1.8},
                       {"speedup_parallel_vs_serial_min", 1.5},
                       {"parallel_cpu_utilization_min", 0.9},
                       {"max_accuracy_difference_max", 0.01}};
  std::cout << result.dump(2) << std::endl;
  return 0;
}
