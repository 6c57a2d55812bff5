#pragma once

// The last lines `hogwild` and `sgd` print (private to pnn_runtime).

#include <cstdio>
#include <filesystem>

namespace pnn::runtime::detail {

/// Test figures, time, CPU and memory of a finished run, then where its files are.
template <class Report>
void print_run_footer(const Report& r, const std::filesystem::path& out) {
  std::printf("test accuracy: %.4f (loss %.4f); final train loss %.4f\n", r.test_accuracy,
              r.test_loss, r.final_train_loss);
  std::printf("training %.1f s at %.0f samples/s; wall time %.1f s, mean CPU utilisation %.1f%%, "
              "CPU user %.1f s, system %.1f s, peak RSS %.0f MiB\n",
              r.train_seconds, r.samples_per_second, r.wall_seconds, 100 * r.cpu_utilization_mean,
              r.user_cpu_seconds, r.system_cpu_seconds,
              static_cast<double>(r.peak_rss_bytes) / (1 << 20));
  std::printf("results: %s (summary.json, summary.md, loss.csv, loss_worker<i>.csv, "
              "confusion.csv, test.json, model.pt, cpu.csv, workers/)\n",
              out.c_str());
}

} // namespace pnn::runtime::detail
