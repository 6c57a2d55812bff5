#include <pnn/models/lenet5.hpp>

#include <torch/torch.h>

namespace pnn::models {

namespace nn = torch::nn;

LeNet5Impl::LeNet5Impl(int64_t in_channels, int64_t num_classes) {
  conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, 6, 5)));
  bn1_ = register_module("bn1", FastBatchNorm2d(6));
  conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(6, 16, 5)));
  bn2_ = register_module("bn2", FastBatchNorm2d(16));
  fc1_ = register_module("fc1", nn::Linear(16 * 5 * 5, 120));
  fc2_ = register_module("fc2", nn::Linear(120, 84));
  fc3_ = register_module("fc3", nn::Linear(84, num_classes));
}

torch::Tensor LeNet5Impl::forward(torch::Tensor x) {
  if (bn1_->foldable() && bn2_->foldable()) { // evaluation: batch norms folded in
    // (torch::conv2d's defaults, stride 1 and no padding, are LeNet5's convolutions.)
    auto [w1, b1] = fold_batch_norm(conv1_->weight, conv1_->bias, *bn1_);
    auto [w2, b2] = fold_batch_norm(conv2_->weight, conv2_->bias, *bn2_);
    x = torch::relu(max_pool2x2(torch::conv2d(x, w1, b1)));
    x = torch::relu(max_pool2x2(torch::conv2d(x, w2, b2)));
    return fc3_(torch::relu(fc2_(torch::relu(fc1_(x.flatten(1))))));
  }
  // Pooled before the ReLU, on a quarter of the values: max and ReLU commute, and
  // so do their gradients (a window's maximum is the ReLU's nonzero if any).
  x = torch::relu(max_pool2x2(bn1_(conv1_(x))));
  x = torch::relu(max_pool2x2(bn2_(conv2_(x))));
  x = x.flatten(1);
  x = torch::relu(fc1_(x));
  x = torch::relu(fc2_(x));
  return fc3_(x);
}

} // namespace pnn::models
