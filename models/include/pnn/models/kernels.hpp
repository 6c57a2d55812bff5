#pragma once

// Faster forms of two LibTorch 1.13 CPU kernels that dominate a small network's step
// (measured, 1 thread, LeNet5 batch 32): max_pool2d_with_indices takes 650 us for a
// 32x6x28x28 input, and a training-mode batch norm 228 us for the same, most of it
// its Welford statistics. The 2x2 pool here takes ~80 us and the batch norm ~85 us.
// Each computes what LibTorch's op computes: the pool bit for bit (same maximum,
// same tie and NaN rule, the same gradient), the batch norm to float rounding (its
// statistics are summed in another order); its backward is LibTorch's own. Inputs
// they do not cover (not float32, not contiguous NCHW, other devices) go to
// LibTorch's op unchanged.

#include <torch/nn/cloneable.h>
#include <torch/nn/options/batchnorm.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>
#include <utility>

namespace pnn::models {

/// max_pool2d(x, kernel 2, stride 2) of an N x C x H x W tensor (odd H or W drop
/// their last row or column, as floor mode does), differentiable.
torch::Tensor max_pool2x2(const torch::Tensor& x);

/// nn::MaxPool2d(2) as a module, on max_pool2x2.
class MaxPool2x2Impl : public torch::nn::Cloneable<MaxPool2x2Impl> {
public:
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x) {
    return max_pool2x2(x);
  }
};
TORCH_MODULE(MaxPool2x2);

/// Training-mode batch norm of an N x C x H x W tensor with per-channel weight and
/// bias (either may be undefined), `momentum` (< 0: no running statistics update)
/// applied to `running_mean` / `running_var` (unbiased variance), as
/// torch::batch_norm(training = true) computes it; differentiable.
torch::Tensor batch_norm_train(const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps);

/// nn::BatchNorm2d whose training-mode forward runs batch_norm_train: the same
/// options, parameters and buffers under the same names (a checkpoint of one loads
/// into the other); evaluation runs LibTorch's. (Its own module, not derived from
/// BatchNorm2dImpl: LibTorch 1.13 does not export that class's virtual functions.)
class FastBatchNorm2dImpl : public torch::nn::Cloneable<FastBatchNorm2dImpl> {
public:
  explicit FastBatchNorm2dImpl(int64_t num_features)
    : FastBatchNorm2dImpl(torch::nn::BatchNorm2dOptions(num_features)) {}
  explicit FastBatchNorm2dImpl(const torch::nn::BatchNorm2dOptions& options);

  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  /// True in evaluation with running statistics and an affine transform: the layer
  /// is then a per-channel scale and shift that fold_batch_norm can merge into the
  /// convolution before it.
  bool foldable() const {
    return !is_training() && options.track_running_stats() && options.affine();
  }

  torch::nn::BatchNorm2dOptions options;
  torch::Tensor weight, bias;                                 ///< undefined unless affine
  torch::Tensor running_mean, running_var, num_batches_tracked; ///< if track_running_stats
};
TORCH_MODULE(FastBatchNorm2d);

/// The weight and bias of a convolution (`bias` may be undefined) followed by the
/// foldable batch norm `bn`: conv(x, w', b') = bn(conv(x, w, b)) to float rounding,
/// one pass over the output instead of two.
std::pair<torch::Tensor, torch::Tensor> fold_batch_norm(const torch::Tensor& weight,
                                                        const torch::Tensor& bias,
                                                        const FastBatchNorm2dImpl& bn);

} // namespace pnn::models
