#pragma once

#include <pnn/models/kernels.hpp>
#include <pnn/models/network.hpp>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace pnn::models {

/// LeNet5 with batch norm after each convolution: conv 6 and 16 (5x5, BN, ReLU,
/// 2x2 max-pool), then fully connected 120, 84, classes. 61,750 parameters for a
/// 1x32x32 input and 10 classes.
class LeNet5Impl : public Network {
public:
  LeNet5Impl(int64_t in_channels = 1, int64_t num_classes = 10);
  torch::Tensor forward(torch::Tensor x) override;

private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  FastBatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};
TORCH_MODULE(LeNet5);

} // namespace pnn::models
