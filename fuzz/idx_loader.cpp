// libFuzzer target: pnn::training::load_idx on arbitrary image and label files, raw
// or gzip. The loader may refuse an input only with pnn::error (a one-line reason);
// any other exception, a crash, a sanitizer report, a hang or an allocation beyond
// libFuzzer's limits is a finding.
//
// Input layout: 2 bytes (little-endian) = length of the images file, then the images
// file, then the labels file (the rest).

#include "fuzz_util.hpp"

#include <pnn/error.hpp>
#include <pnn/training/dataset.hpp>

#include <algorithm>
#include <torch/types.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2)
    return 0;
  const size_t split = std::min<size_t>(size - 2, size_t{data[0]} | (size_t{data[1]} << 8));
  const auto images = pnn::fuzz::write_input("images", data + 2, split);
  const auto labels = pnn::fuzz::write_input("labels", data + 2 + split, size - 2 - split);
  try {
    auto d = pnn::training::load_idx(images, labels, "fuzz",
                                     {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"});
    // What a loaded dataset promises the rest of pnn.
    if (d.images.dim() != 4 || d.images.size(0) != d.labels.size(0) || d.size() < 1)
      std::abort();
    if (d.labels.min().item<int64_t>() < 0 || d.labels.max().item<int64_t>() > 9)
      std::abort();
  } catch (const pnn::error&) {
    // refused with a reason: fine
  }
  return 0;
}
