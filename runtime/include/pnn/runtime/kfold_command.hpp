#pragma once

namespace pnn {
struct kfold_options;
}

namespace pnn::runtime {

/// Runs a K-fold experiment as `pnn-node kfold` does: the run, then the accuracy
/// table, wall time, CPU utilisation and where the files are on stdout. Returns the
/// exit code (0 when every job succeeded, 1 when some failed). Throws pnn::error.
int run_kfold_command(const kfold_options& options);

} // namespace pnn::runtime
