#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace pnn::runtime {

/// What `pnn-node train` was asked to do, as plain values (no LibTorch types, so the
/// CLI does not compile LibTorch's headers).
struct train_request {
  std::string dataset = "fashion-mnist";
  std::filesystem::path data_dir;
  int64_t subset = 0;
  std::string model = "lenet5";
  std::string optimizer = "adam";
  double lr = 1e-3;
  std::string scheduler = "cosine";
  int64_t epochs = 1;
  int64_t batch_size = 32;
  std::filesystem::path out;
  int threads = 1;
  uint64_t seed = 1;
  int64_t checkpoint_every = 1;
  bool resume = false;
  /// Progress: "auto" (in place on a TTY, plain lines otherwise), "plain", "none".
  std::string progress = "auto";
  /// Check every flag, then return 0 without loading data or writing anything.
  bool dry_run = false;
};

/// Runs one training job end to end: loads the data, trains, tests on the test set,
/// writes the outputs of DESIGN.md under `out` and prints a summary. Returns the
/// exit code (0). Throws pnn::error for bad input or a failed run.
int run_train(const train_request& request);

} // namespace pnn::runtime
