// libFuzzer target: pnn::training::load_cifar10_files on an arbitrary batch file (raw
// or gzip). Refusing with pnn::error is fine; anything else is a finding.

#include "fuzz_util.hpp"

#include <pnn/error.hpp>
#include <pnn/training/dataset.hpp>

#include <torch/types.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto batch = pnn::fuzz::write_input("data_batch.bin", data, size);
  try {
    auto d = pnn::training::load_cifar10_files(
      {batch}, "fuzz",
      {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"});
    if (d.images.dim() != 4 || d.images.size(1) != 3 || d.size() < 1
        || d.images.size(0) != d.labels.size(0))
      std::abort();
    if (d.labels.max().item<int64_t>() > 9)
      std::abort();
  } catch (const pnn::error&) {
  }
  return 0;
}
