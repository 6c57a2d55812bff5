// HOGWILD on one host: LeNet5 on a Fashion-MNIST subset trained by 1 worker (plain
// SGD through the same code path) and by 2 workers sharing one model, each worker
// with 1 intra-op thread, at equal epochs. Runs alternate (1, 2, 2, 1, 1, 2, ...)
// in one process because this VM's speed drifts; medians are reported. Prints JSON:
// samples/s of each and their ratio (target >= 1.85 on 2 cores), wall time until
// the moving-average training loss first reaches a fixed value, final test accuracy
// (target: 2 workers within 1 point of 1 worker), CPU utilisation and system time.
//
// usage: bench_hogwild [--subset N] [--epochs E] [--rounds R] [--target-loss X]
//                      [--dataset D] [--out DIR]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/system.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

using namespace pnn;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty())
    return NAN;
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

nlohmann::json num(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

} // namespace

int main(int argc, char** argv) {
  pnn::configure_allocator();
  std::string dataset = "fashion-mnist";
  int64_t subset = 30000;
  int64_t epochs = 3;
  int rounds = 5;
  double target_loss = 0.45;
  std::filesystem::path out = std::filesystem::temp_directory_path() / "pnn-bench-hogwild";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--subset")
      subset = std::stoll(value);
    else if (flag == "--epochs")
      epochs = std::stoll(value);
    else if (flag == "--rounds")
      rounds = std::stoi(value);
    else if (flag == "--target-loss")
      target_loss = std::stod(value);
    else if (flag == "--dataset")
      dataset = value;
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_hogwild: unknown flag " << flag << "\n";
      return 2;
    }
  }

  struct measured {
    std::vector<double> samples_per_second, train_seconds, time_to_loss, test_accuracy,
      final_train_loss, cpu_utilization, system_cpu_seconds;
    std::vector<std::vector<double>> worker_seconds; // each worker's first to last step
  };
  measured m[2];
  for (int round = 0; round < rounds; ++round) {
    // ABBA order: 1,2 then 2,1, ...
    for (int k = 0; k < 2; ++k) {
      const int workers = (round % 2 == 0) == (k == 0) ? 1 : 2;
      hogwild_options o;
      o.dataset = dataset;
      o.subset = subset;
      o.model = "lenet5";
      o.workers = workers;
      o.threads_per_worker = 1;
      o.optimizer = "adam";
      o.lr = 1e-3;
      o.scheduler = "none";
      o.epochs = epochs;
      o.batch_size = 32;
      o.progress = "none";
      o.out = out / ("w" + std::to_string(workers) + "_r" + std::to_string(round));
      auto r = run_hogwild(o);
      auto& x = m[workers - 1];
      x.samples_per_second.push_back(r.samples_per_second);
      x.train_seconds.push_back(r.train_seconds);
      x.time_to_loss.push_back(time_to_loss(r, target_loss, o.loss_window));
      x.test_accuracy.push_back(r.test_accuracy);
      x.final_train_loss.push_back(r.final_train_loss);
      x.cpu_utilization.push_back(r.cpu_utilization_mean);
      x.system_cpu_seconds.push_back(r.system_cpu_seconds);
      std::vector<double> spans;
      for (const auto& w : r.workers)
        spans.push_back(w.steps.empty() ? 0.0 : w.steps.back().time);
      x.worker_seconds.push_back(spans);
      std::cerr << "round " << round + 1 << "/" << rounds << ", " << workers
                << " worker(s): " << r.samples_per_second << " samples/s, test accuracy "
                << r.test_accuracy << "\n";
    }
  }
  nlohmann::json result{{"bench", "hogwild"},
                        {"model", "lenet5"},
                        {"dataset", dataset},
                        {"subset", subset},
                        {"epochs", epochs},
                        {"batch_size", 32},
                        {"optimizer", "adam lr 1e-3, no schedule"},
                        {"rounds", rounds},
                        {"cores", pnn::available_cores()},
                        {"target_loss", target_loss},
                        {"loss_window_steps", 50}};
  const char* names[2] = {"one_worker", "two_workers"};
  for (int w = 0; w < 2; ++w) {
    const auto& x = m[w];
    result[names[w]] = {{"samples_per_second_median", median(x.samples_per_second)},
                        {"samples_per_second", x.samples_per_second},
                        {"train_seconds_median", median(x.train_seconds)},
                        {"seconds_to_target_loss_median", num(median(x.time_to_loss))},
                        {"test_accuracy_median", median(x.test_accuracy)},
                        {"test_accuracy", x.test_accuracy},
                        {"final_train_loss_median", median(x.final_train_loss)},
                        {"cpu_utilization_median", median(x.cpu_utilization)},
                        {"system_cpu_seconds_median", median(x.system_cpu_seconds)},
                        {"worker_end_seconds", x.worker_seconds}};
  }
  const double ratio = median(m[1].samples_per_second) / median(m[0].samples_per_second);
  std::vector<double> per_round;
  for (size_t i = 0; i < m[0].samples_per_second.size() && i < m[1].samples_per_second.size(); ++i)
    per_round.push_back(m[1].samples_per_second[i] / m[0].samples_per_second[i]);
  result["samples_per_second_ratio_two_vs_one"] = ratio;
  result["samples_per_second_ratio_per_round"] = per_round;
  result["time_to_target_loss_ratio_one_vs_two"] =
    num(median(m[0].time_to_loss) / median(m[1].time_to_loss));
  result["test_accuracy_difference_points"] =
    100 * (median(m[1].test_accuracy) - median(m[0].test_accuracy));
  result["targets"] = {{"samples_per_second_ratio_min", 1.85},
                       {"test_accuracy_difference_points_max_abs", 1.0}};
  result["met"] = {
    {"samples_per_second_ratio", ratio >= 1.85},
    {"test_accuracy", std::abs(result["test_accuracy_difference_points"].get<double>()) <= 1.0}};
  std::cout << result.dump(2) << std::endl;
  return 0;
}
