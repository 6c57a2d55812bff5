#include <pnn/runtime/kfold_command.hpp>

#include <pnn/experiments/kfold.hpp>
#include <pnn/runtime/cli.hpp>

#include <cstdio>

namespace pnn::runtime {

int run_kfold_command(const kfold_options& o) {
  const auto configs = configurations(o);
  const bool grid = configs.size() != o.models.size() * o.schedulers.size();
  std::string sizes = std::to_string(o.models.size()) + " model(s) x "
    + std::to_string(o.schedulers.size()) + " scheduler(s)";
  if (grid) { // the fields that vary, and how many configurations they make
    for (auto [count, what] : {std::pair{o.optimizers.size(), " optimizer(s)"},
                               std::pair{o.lrs.size(), " lr(s)"},
                               std::pair{o.batch_sizes.size(), " batch size(s)"}})
      if (count > 1)
        sizes += " x " + std::to_string(count) + what;
    sizes = std::to_string(configs.size()) + " configurations (" + sizes + ")";
  }
  const std::string batch = o.batch_sizes.size() > 1
    ? "batch sizes in the grid"
    : "batch " + std::to_string(o.batch_sizes.empty() ? o.batch_size : o.batch_sizes[0]);
  std::printf("pnn kfold: %s x %d folds on %s, %lld epoch(s), %s, %s\n", sizes.c_str(), o.folds,
              o.dataset.c_str(), static_cast<long long>(o.epochs), batch.c_str(),
              o.serial ? "serial (one job at a time, all cores)" : "parallel");
  std::fflush(stdout);
  auto report = run_kfold(o);
  size_t failed = 0;
  for (const auto& j : report.jobs)
    failed += j.ok() ? 0 : 1;
  std::printf("\n%s\n", format_table(report).c_str());
  std::printf("wall time %.1f s, mean CPU utilisation %.1f%%, CPU user %.1f s, system %.1f s, "
              "peak RSS %.0f MiB\n",
              report.wall_seconds, 100 * report.cpu_utilization_mean, report.user_cpu_seconds,
              report.system_cpu_seconds, static_cast<double>(report.peak_rss_bytes) / (1 << 20));
  if (failed > 0 && !report.interrupted) {
    std::printf("%zu job(s) FAILED (see summary.json)\n", failed);
    // The first failure's reason on stderr too: one line a script or a person can act on.
    for (const auto& j : report.jobs)
      if (!j.ok()) {
        std::fprintf(stderr, "pnn-node kfold: %zu job(s) failed; %s fold %d: %s\n", failed,
                     configs.at(config_of_job(j.id, o.folds)).name.c_str(), j.fold,
                     j.error.c_str());
        break;
      }
  }
  std::printf("results: %s (summary.json, summary.md, cpu.csv; job files in "
              "<model>/<scheduler>/%sfold<i>/)\n",
              o.out.c_str(), grid ? "<grid fields>/" : "");
  if (report.interrupted)
    return report_interrupted("kfold", std::to_string(report.jobs.size() - failed) + " of "
                                         + std::to_string(report.jobs.size()) + " jobs finished");
  return failed == 0 ? 0 : 1;
}

} // namespace pnn::runtime
