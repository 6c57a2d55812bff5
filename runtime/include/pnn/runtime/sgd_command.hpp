#pragma once

namespace pnn {
struct sgd_options;
}

namespace pnn::runtime {

/// Runs distributed SGD as `pnn-node sgd` does: the run, then each worker's host,
/// samples, pulls and pushes, the holder's counters, test accuracy and samples/s on
/// stdout. Returns the exit code (0). Throws pnn::error for bad input or a failed run.
int run_sgd_command(const sgd_options& options);

} // namespace pnn::runtime
