// HOGWILD on one host: LeNet5 on a Fashion-MNIST subset trained by 1 worker (plain
// SGD through the same code path) and by 2 workers sharing one model, each worker
// with 1 intra-op thread, at equal epochs. Runs alternate (1, 2, 2, 1, 1, 2, ...)
// in one process because this VM's speed drifts; medians are reported. Prints JSON:
// samples/s of each and their ratio (target >= 1.85 on 2 cores), wall time until
// the moving-average training loss first reaches a fixed value, final test accuracy
// (target: 2 workers within 1 point of 1 worker), CPU utilisation and system time.
//
// With --seeds, one round per seed (1 worker, then 2 workers with each --balance),
// and the accuracy target is on the means over the seeds: a run's final accuracy
// varies by a point from seed to seed, so one seed's difference says little.
// The second setup: --optimizer sgd:momentum=0.5 --lr 0.01 --batch-size 64
// --scheduler none --subset 0 --epochs 2 --balance static,dynamic --seeds 1,...,12.
//
// usage: bench_hogwild [--subset N] [--epochs E] [--rounds R] [--target-loss X]
//                      [--dataset D] [--optimizer O] [--lr X] [--batch-size B]
//                      [--scheduler S] [--seeds 1,2,...] [--balance dynamic,static]
//                      [--out DIR]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/system.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
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

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty())
      out.push_back(item);
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}

/// What one configuration (1 worker, or 2 with a balance) measured over the rounds.
struct measured {
  std::vector<double> samples_per_second, train_seconds, time_to_loss, test_accuracy,
    final_train_loss, cpu_utilization, system_cpu_seconds;
  std::vector<std::vector<double>> worker_seconds; // each worker's first to last step
};

nlohmann::json to_json(const measured& x) {
  return {{"samples_per_second_median", median(x.samples_per_second)},
          {"samples_per_second", x.samples_per_second},
          {"train_seconds_median", median(x.train_seconds)},
          {"seconds_to_target_loss_median", num(median(x.time_to_loss))},
          {"test_accuracy_median", median(x.test_accuracy)},
          {"test_accuracy_mean", mean(x.test_accuracy)},
          {"test_accuracy", x.test_accuracy},
          {"final_train_loss_median", median(x.final_train_loss)},
          {"cpu_utilization_median", median(x.cpu_utilization)},
          {"system_cpu_seconds_median", median(x.system_cpu_seconds)},
          {"worker_end_seconds", x.worker_seconds}};
}

} // namespace

int main(int argc, char** argv) {
  pnn::configure_allocator();
  std::string dataset = "fashion-mnist";
  int64_t subset = 30000;
  int64_t epochs = 3;
  int rounds = 5;
  double target_loss = 0.45;
  std::string optimizer = "adam", scheduler = "none";
  double lr = 1e-3;
  int64_t batch_size = 32;
  std::vector<std::string> seeds{"1"}, balances{"dynamic"};
  bool seeds_given = false;
  std::filesystem::path out = std::filesystem::temp_directory_path() / "pnn-bench-hogwild";
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (i + 1 == argc) {
      std::cerr << "bench_hogwild: " << flag << " needs a value\n";
      return 2;
    }
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
    else if (flag == "--optimizer")
      optimizer = value;
    else if (flag == "--lr")
      lr = std::stod(value);
    else if (flag == "--batch-size")
      batch_size = std::stoll(value);
    else if (flag == "--scheduler")
      scheduler = value;
    else if (flag == "--seeds") {
      seeds = split(value);
      seeds_given = true;
    } else if (flag == "--balance")
      balances = split(value);
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_hogwild: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (seeds.empty() || balances.empty()) {
    std::cerr << "bench_hogwild: --seeds and --balance need at least one value\n";
    return 2;
  }
  if (seeds_given) // one round per seed
    rounds = static_cast<int>(seeds.size());

  // m[0]: one worker; m[1 + b]: two workers with balances[b].
  std::vector<measured> m(1 + balances.size());
  for (int round = 0; round < rounds; ++round) {
    const auto seed = std::stoull(seeds[static_cast<size_t>(round) % seeds.size()]);
    // ABBA order: 1 then 2 (each balance), then 2 then 1, ...
    std::vector<size_t> order;
    for (size_t k = 0; k < m.size(); ++k)
      order.push_back(k);
    if (round % 2 == 1)
      std::reverse(order.begin(), order.end());
    for (size_t k : order) {
      const int workers = k == 0 ? 1 : 2;
      hogwild_options o;
      o.dataset = dataset;
      o.subset = subset;
      o.model = "lenet5";
      o.workers = workers;
      o.balance = k == 0 ? "dynamic" : balances[k - 1];
      o.threads_per_worker = 1;
      o.optimizer = optimizer;
      o.lr = lr;
      o.scheduler = scheduler;
      o.epochs = epochs;
      o.batch_size = batch_size;
      o.seed = seed;
      o.progress = "none";
      o.out = out / ("w" + std::to_string(workers) + (k == 0 ? "" : "_" + o.balance) + "_r"
                     + std::to_string(round));
      auto r = run_hogwild(o);
      auto& x = m[k];
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
      std::cerr << "round " << round + 1 << "/" << rounds << ", seed " << seed << ", "
                << workers << " worker(s)" << (k == 0 ? "" : " " + o.balance) << ": "
                << r.samples_per_second << " samples/s, test accuracy " << r.test_accuracy
                << "\n";
    }
  }
  std::ostringstream opt;
  opt << optimizer << " lr " << lr << ", scheduler " << scheduler;
  nlohmann::json result{{"bench", "hogwild"},
                        {"model", "lenet5"},
                        {"dataset", dataset},
                        {"subset", subset},
                        {"epochs", epochs},
                        {"batch_size", batch_size},
                        {"optimizer", opt.str()},
                        {"rounds", rounds},
                        {"seeds", seeds},
                        {"cores", pnn::available_cores()},
                        {"target_loss", target_loss},
                        {"loss_window_steps", 50}};
  result["one_worker"] = to_json(m[0]);
  // The first balance keeps the keys this bench always printed; every balance has
  // its own entry too.
  const double ratio = median(m[1].samples_per_second) / median(m[0].samples_per_second);
  std::vector<double> per_round;
  for (size_t i = 0; i < m[0].samples_per_second.size() && i < m[1].samples_per_second.size(); ++i)
    per_round.push_back(m[1].samples_per_second[i] / m[0].samples_per_second[i]);
  result["two_workers"] = to_json(m[1]);
  result["samples_per_second_ratio_two_vs_one"] = ratio;
  result["samples_per_second_ratio_per_round"] = per_round;
  result["time_to_target_loss_ratio_one_vs_two"] =
    num(median(m[0].time_to_loss) / median(m[1].time_to_loss));
  result["test_accuracy_difference_points"] =
    100 * (median(m[1].test_accuracy) - median(m[0].test_accuracy));
  nlohmann::json by_balance = nlohmann::json::object();
  bool accurate = true;
  for (size_t b = 0; b < balances.size(); ++b) {
    const auto& x = m[1 + b];
    const double diff_mean = 100 * (mean(x.test_accuracy) - mean(m[0].test_accuracy));
    const double diff_median = 100 * (median(x.test_accuracy) - median(m[0].test_accuracy));
    auto j = to_json(x);
    j["test_accuracy_difference_points_mean"] = diff_mean;
    j["test_accuracy_difference_points_median"] = diff_median;
    by_balance[balances[b]] = j;
    accurate = accurate && std::abs(seeds_given ? diff_mean : diff_median) <= 1.0;
  }
  result["two_workers_by_balance"] = by_balance;
  result["targets"] = {{"samples_per_second_ratio_min", 1.85},
                       {"test_accuracy_difference_points_max_abs", 1.0},
                       {"test_accuracy_difference_of",
                        seeds_given ? "means over the seeds" : "medians over the rounds"}};
  result["met"] = {{"samples_per_second_ratio", ratio >= 1.85}, {"test_accuracy", accurate}};
  std::cout << result.dump(2) << std::endl;
  return 0;
}
