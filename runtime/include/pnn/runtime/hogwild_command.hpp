#pragma once

namespace pnn {
struct hogwild_options;
}

namespace pnn::runtime {

/// Runs HOGWILD as `pnn-node hogwild` does: the run, then test accuracy, samples/s,
/// wall time, CPU utilisation and where the files are on stdout. Returns the exit
/// code (0). Throws pnn::error for bad input or a failed run.
int run_hogwild_command(const hogwild_options& options);

} // namespace pnn::runtime
