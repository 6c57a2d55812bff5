// Model selection with and without pruning: one K-fold grid run exhaustively and with
// --prune halving, side by side, for each of several split seeds (each run its own
// pnn-node process). Prints JSON: per seed and mode the wall time, core-seconds
// (user + system CPU), mean CPU utilisation, the top-1 and top-3 configurations; and
// the ratios the pruning targets ask for: halving's core-seconds over the
// exhaustive grid's, whether halving's top-1 is the exhaustive top-1 (or within 0.3
// point of its accuracy in the exhaustive run).
//
// usage: bench_prune [--subset N] [--epochs E] [--folds K] [--seeds 1,2,3]
//                    [--models a,b] [--schedulers a,b] [--lrs a,b] [--prune SPEC]
//                    [--out DIR]
#include "bench_args.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;
using pnn::bench::split;

namespace {

/// A configuration's place in a run: trained to the end first (by accuracy), then
/// those pruning stopped, the later-stopped first.
struct ranked {
  std::string config;
  double accuracy = 0;
  int64_t epochs = 0;
};

std::vector<ranked> ranking(const json& summary, int64_t epochs) {
  std::vector<ranked> r;
  for (const auto& row : summary["table"]) {
    if (row["folds_ok"].get<int>() == 0 || !row["val_accuracy_mean"].is_number())
      continue;
    r.push_back({row["config"].get<std::string>(), row["val_accuracy_mean"].get<double>(),
                 row.value("pruned", false) ? row["stopped_at_epoch"].get<int64_t>() : epochs});
  }
  std::stable_sort(r.begin(), r.end(), [](const ranked& a, const ranked& b) {
    return a.epochs != b.epochs ? a.epochs > b.epochs : a.accuracy > b.accuracy;
  });
  return r;
}

} // namespace

int main(int argc, char** argv) {
  std::string subset = "6000", epochs = "9", folds = "3", seeds = "1,2,3",
              models = "lenet,lenet5,alexnet", schedulers = "cosine,warm,none",
              lrs = "0.001,0.003,0.01,0.03", prune = "halving:eta=3,min_epochs=1";
  fs::path out = fs::temp_directory_path() / "pnn-bench-prune";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--subset")
      subset = value;
    else if (flag == "--epochs")
      epochs = value;
    else if (flag == "--folds")
      folds = value;
    else if (flag == "--seeds")
      seeds = value;
    else if (flag == "--models")
      models = value;
    else if (flag == "--schedulers")
      schedulers = value;
    else if (flag == "--lrs")
      lrs = value;
    else if (flag == "--prune")
      prune = value;
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_prune: unknown flag " << flag << "\n";
      return 2;
    }
  }
  fs::remove_all(out);
  fs::create_directories(out);
  const int64_t epoch_count = std::stoll(epochs);
  const std::string common = std::string{PNN_NODE_PATH}
    + " kfold --dataset fashion-mnist --subset " + subset + " --models " + models
    + " --schedulers " + schedulers + " --lrs " + lrs + " --folds " + folds + " --epochs "
    + epochs + " --batch-size 32 --progress none --no-report";
  json result;
  result["benchmark"] = "prune";
  result["workload"] = "fashion-mnist subset " + subset + ", " + models + " x " + schedulers
    + " x lr " + lrs + ", K=" + folds + ", " + epochs + " epochs, batch 32, Adam";
  result["prune"] = prune;
  json per_seed = json::array();
  double sum_ratio = 0;
  bool all_top1 = true, all_busy = true;
  for (const auto& seed : split(seeds)) {
    json entry{{"split_seed", std::stoi(seed)}};
    std::map<std::string, json> summaries;
    for (const auto& [mode, flags] : std::vector<std::pair<std::string, std::string>>{
           {"exhaustive", ""}, {"halving", " --prune " + prune}}) {
      const auto dir = out / ("seed" + seed) / mode;
      const auto log = dir.string() + ".log";
      fs::create_directories(dir.parent_path());
      const auto cmd = common + " --split-seed " + seed + flags + " --out " + dir.string() + " > "
        + log + " 2>&1";
      const int rc = std::system(cmd.c_str());
      std::ifstream in(dir / "summary.json");
      if (!in) { // a run with failed jobs (a diverging lr) still has its summary
        std::cerr << "bench_prune: " << mode << " seed " << seed << " failed (exit " << rc
                  << "), see " << log << "\n";
        return 1;
      }
      auto s = json::parse(in);
      auto rank = ranking(s, epoch_count);
      json top = json::array();
      for (size_t i = 0; i < std::min<size_t>(3, rank.size()); ++i)
        top.push_back({{"config", rank[i].config},
                       {"val_accuracy", rank[i].accuracy},
                       {"epochs", rank[i].epochs}});
      const double core_seconds =
        s["user_cpu_seconds"].get<double>() + s["system_cpu_seconds"].get<double>();
      entry[mode] = {{"wall_seconds", s["wall_seconds"]},
                     {"core_seconds", core_seconds},
                     {"cpu_utilization_mean", s["cpu_utilization_mean"]},
                     {"jobs_failed", s["jobs_failed"]},
                     {"top3", top}};
      if (s.contains("prune"))
        entry[mode]["prune"] = s["prune"];
      all_busy = all_busy && s["cpu_utilization_mean"].get<double>() >= 0.95;
      summaries[mode] = s;
    }
    const auto exhaustive = ranking(summaries["exhaustive"], epoch_count);
    const auto halving = ranking(summaries["halving"], epoch_count);
    if (exhaustive.empty() || halving.empty()) {
      std::cerr << "bench_prune: seed " << seed << ": a run has no configuration with a result\n";
      return 1;
    }
    const auto& best = exhaustive.front();
    // Halving's top-1 as the exhaustive run measured it.
    double halving_top1_there = 0;
    for (const auto& r : exhaustive)
      if (r.config == halving.front().config)
        halving_top1_there = r.accuracy;
    const bool same = halving.front().config == best.config;
    const bool close = best.accuracy - halving_top1_there <= 0.003;
    const double ratio = entry["halving"]["core_seconds"].get<double>()
      / entry["exhaustive"]["core_seconds"].get<double>();
    entry["same_top1"] = same;
    entry["halving_top1_behind_exhaustive_top1_points"] = 100 * (best.accuracy - halving_top1_there);
    entry["top1_target_met"] = same || close;
    entry["core_seconds_ratio"] = ratio;
    entry["wall_ratio"] = entry["halving"]["wall_seconds"].get<double>()
      / entry["exhaustive"]["wall_seconds"].get<double>();
    all_top1 = all_top1 && (same || close);
    sum_ratio += ratio;
    per_seed.push_back(entry);
    std::cerr << "bench_prune: seed " << seed << " done: core-seconds ratio " << ratio
              << ", same top-1 " << same << "\n";
  }
  result["seeds"] = per_seed;
  result["core_seconds_ratio_mean"] = sum_ratio / static_cast<double>(per_seed.size());
  result["targets"] = {{"top1_in_every_seed", all_top1},
                       {"core_seconds_ratio_at_most_one_third",
                        result["core_seconds_ratio_mean"].get<double>() <= 1.0 / 3},
                       {"cpu_utilization_at_least_95_percent", all_busy}};
  std::cout << result.dump(2) << "\n";
  return 0;
}
