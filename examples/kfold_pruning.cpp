// Model selection that stops losers early, through the C++ API: a grid of models x
// learning rates, K=3, with successive halving's rungs (kfold_options::prune) and a
// rule of our own at each rung (kfold_options::pruning_rule): the median stopping
// rule, as Google Vizier and Optuna's MedianPruner use it, here over each
// configuration's mean accuracy across its folds. A configuration goes on when it is
// at least as good as the median of those that completed the rung so far.
//
//   ./build/examples/kfold_pruning [--synthetic] [--subset N] [--epochs N] [--out DIR]
//       [--asha]     ASHA's own rule (the top 1/eta) instead of the median rule
#include <pnn/error.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/experiments/pruning.hpp>
#include <pnn/system.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

/// The median stopping rule: of the configurations that completed this rung (best
/// first), those not below the median go on.
std::vector<uint32_t> median_rule(const pnn::rung_view& rung) {
  std::vector<double> means; // best first; a fold without a figure (NaN) counts as none
  for (const auto& c : rung.completed)
    if (std::isfinite(c.mean))
      means.push_back(c.mean);
  std::vector<uint32_t> go_on;
  if (means.empty())
    return go_on;
  const size_t n = means.size();
  const double median = n % 2 == 1 ? means[n / 2] : (means[n / 2 - 1] + means[n / 2]) / 2;
  for (const auto& c : rung.completed)
    if (!c.promoted && c.mean >= median)
      go_on.push_back(c.config);
  return go_on;
}

} // namespace

int main(int argc, char** argv) {
  pnn::configure_allocator();
  pnn::kfold_options o;
  o.dataset = "fashion-mnist";
  o.subset = 3000;
  o.epochs = 9;
  o.out = "runs/kfold_pruning";
  bool asha = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    try {
      if (flag == "--synthetic") {
        o.dataset = "synthetic";
      } else if (flag == "--asha") {
        asha = true;
      } else if (i + 1 < argc && flag == "--subset") {
        o.subset = std::stoll(argv[++i]);
      } else if (i + 1 < argc && flag == "--epochs") {
        o.epochs = std::stoll(argv[++i]);
      } else if (i + 1 < argc && flag == "--out") {
        o.out = argv[++i];
      } else {
        throw std::invalid_argument(flag);
      }
    } catch (const std::exception&) {
      std::fprintf(stderr,
                   "kfold_pruning: bad flag %s (expected --synthetic, --subset N, --epochs N, "
                   "--out DIR, --asha)\n",
                   argv[i]);
      return 2;
    }
  }
  o.models = {"lenet", "lenet5"};
  o.schedulers = {"cosine"};
  o.lrs = {1e-4, 1e-3, 3e-3, 1e-2};
  o.folds = 3;
  o.prune = "halving:eta=3,min_epochs=1"; // rungs at 1 and 3 epochs of 9
  if (!asha)
    o.pruning_rule = median_rule;
  o.progress = "auto";
  try {
    auto report = pnn::run_kfold(o);
    std::printf("\n%s\nwall time %.1f s, mean CPU utilisation %.1f%%; decisions in %s\n",
                pnn::format_table(report).c_str(), report.wall_seconds,
                100 * report.cpu_utilization_mean, (o.out / "pruning.jsonl").c_str());
    const auto& prune = report.summary["prune"];
    std::printf("job seconds %.1f of the whole grid's %.1f (estimate)\n",
                prune["job_seconds"].get<double>(),
                prune["exhaustive_job_seconds_estimate"].get<double>());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "kfold_pruning: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
