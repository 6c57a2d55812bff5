#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pnn::runtime {

/// What `pnn-node report DIR` is asked to draw.
struct report_request {
  /// A run's output folder (kfold, hogwild or sgd: it has summary.json).
  std::filesystem::path dir;
  /// Other runs to compare with: for kfold a serial reference run (speedup per
  /// model and scheduler); for hogwild/sgd other runs whose loss curves, accuracy
  /// and samples/s go beside this one's.
  std::vector<std::filesystem::path> compare;
  /// Other runs of the same kind shown side by side (`report DIR1 DIR2 ...`): kfold
  /// runs' accuracy per configuration in one table and plot; hogwild/sgd runs as
  /// `compare`.
  std::vector<std::filesystem::path> runs;
  /// The gnuplot program that draws the PNGs.
  std::string gnuplot = "gnuplot";
};

/// The files a report consists of.
struct report_files {
  std::filesystem::path markdown;           ///< <dir>/report.md
  std::filesystem::path html;               ///< <dir>/report.html
  std::vector<std::filesystem::path> plots; ///< <dir>/report/*.png
};

/// Reads the run in `request.dir`, writes the data and a gnuplot script to
/// <dir>/report/, draws the PNGs with gnuplot, and writes report.md and report.html
/// that embed them with the run's tables.
///   kfold: accuracy per configuration (mean ± std over folds, the axis zoomed to
///          the data), validation accuracy and loss per epoch (mean ± std), training
///          loss against time per job, per-class accuracy, job timeline per host and
///          slot, CPU utilisation; with a serial run in `compare`: time and speedup per
///          configuration; with `runs`: every run's accuracy side by side.
///   hogwild, sgd: training loss against wall time (one line per run), test
///          accuracy, samples/s, per-class accuracy, CPU utilisation.
/// Throws pnn::error: invalid_argument/file_not_found/malformed_file for a folder
/// that is not a run, io_error when gnuplot is missing or fails (its message included).
report_files write_report(const report_request& request);

/// `pnn-node report` and the report at the end of a run: writes the report and
/// prints where it is. Returns 0.
int run_report(const report_request& request);

} // namespace pnn::runtime
