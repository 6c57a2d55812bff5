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
#include <pnn/runtime/program_flags.hpp>
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
  bool synthetic = false;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("synthetic", po::bool_switch(&synthetic),
       "generated MNIST-shaped data instead of Fashion-MNIST");
  flag("subset", po::value(&o.subset)->default_value(o.subset), "use the first N training samples");
  flag("epochs", po::value(&o.epochs)->default_value(o.epochs),
       "epochs of a configuration kept to the end");
  flag("out", po::value(&o.out)->default_value(o.out), "folder for the results");
  flag("asha", po::bool_switch(&asha), "pnn's own rule (ASHA) instead of the median stopping rule");
  if (int code = pnn::runtime::parse_program_flags(
        "kfold_pruning", "[--synthetic] [--subset N] [--epochs N] [--out DIR] [--asha]",
        "A K-fold grid pruned by successive halving with a rule of our own (median stopping).",
        flags, argc, argv);
      code >= 0)
    return code;
  if (synthetic)
    o.dataset = "synthetic";
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
