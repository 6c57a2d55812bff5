#pragma once

#include <pnn/training/random.hpp>

#include <torch/types.h>

#include <vector>

namespace pnn::training {

/// How a uint8 batch becomes the float batch a model sees.
struct transform_options {
  /// Target height and width; 0 keeps the stored size.
  int64_t size = 32;
  /// How to reach `size`: bilinear resize (what the reference did for MNIST) or
  /// zero padding around the image.
  enum class fit { resize, pad } fit_mode = fit::resize;
  /// Per-channel mean and std after scaling to [0,1]; one value applies to all channels.
  std::vector<double> mean{0.5};
  std::vector<double> std{0.5};
  /// Training-time augmentation: random crop after zero-padding by this many pixels.
  int64_t crop_padding = 0;
  /// Training-time augmentation: flip left-right with probability 1/2.
  bool horizontal_flip = false;
};

/// Normalisation and augmentation that suit a named dataset (Fashion-MNIST: resize to
/// 32, its mean/std; CIFAR-10: crop 4 + flip + its mean/std).
transform_options default_transform(const std::string& dataset_name, bool augment);

/// Gathers the samples `indices[begin, end)` from `images` (uint8 NxCxHxW), and
/// returns the float batch ready for a model. `gen` drives augmentation; pass
/// nullptr for evaluation (no augmentation).
torch::Tensor make_batch(const torch::Tensor& images, const std::vector<int64_t>& indices,
                         size_t begin, size_t end, const transform_options& options, rng* gen);

/// The same transform on an already gathered uint8 batch.
torch::Tensor apply_transform(torch::Tensor batch_u8, const transform_options& options, rng* gen);

} // namespace pnn::training
