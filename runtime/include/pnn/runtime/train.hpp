#pragma once

#include <pnn/experiments/options.hpp>

#include <cstdint>
#include <filesystem>
#include <string>

namespace pnn::runtime {

/// What `pnn-node train` was asked to do, as plain values (no LibTorch types, so the
/// CLI does not compile LibTorch's headers).
/// The option groups are kfold's, hogwild's and sgd's (<pnn/experiments/options.hpp>).
struct train_request : data_group, optimizer_group, schedule_group, output_group {
  std::string model = "lenet5";
  std::string scheduler = "cosine";
  int threads = 1;
  int64_t checkpoint_every = 1;
  /// Evaluate the test set after every this many epochs too (0: after the last only).
  int64_t validate_every = 0;
  bool resume = false;
  /// Check every flag, then return 0 without loading data or writing anything.
  bool dry_run = false;
};

/// Runs one training job end to end: loads the data, trains, tests on the test set,
/// writes the outputs of DESIGN.md under `out` and prints a summary. Returns the
/// exit code (0). Throws pnn::error for bad input or a failed run.
int run_train(const train_request& request);

} // namespace pnn::runtime
