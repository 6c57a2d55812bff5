#pragma once

#include <pnn/models/kernels.hpp>
#include <pnn/models/network.hpp>

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace pnn::models {

/// MobileNet (v1) for 32x32 inputs: a 3x3 stem of 32 channels, then 13
/// depthwise-separable blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU)
/// up to 1024 channels, average pool, linear. 3,217,226 parameters for 3 channels,
/// 10 classes.
class MobileNetImpl : public Network {
public:
  MobileNetImpl(int64_t in_channels = 3, int64_t num_classes = 10);
  torch::Tensor forward(torch::Tensor x) override;

private:
  torch::nn::Conv2d conv1_{nullptr};
  FastBatchNorm2d bn1_{nullptr};
  torch::nn::Sequential layers_{nullptr};
  torch::nn::Linear linear_{nullptr};
};
TORCH_MODULE(MobileNet);

} // namespace pnn::models
