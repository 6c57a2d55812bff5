#pragma once

#include <pnn/models/network.hpp>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

namespace pnn::models {

/// AlexNet's CIFAR variant for 32x32 inputs: five convolutions (64 11x11/4,
/// 192 5x5, 384, 256, 256 3x3) with ReLU and three 2x2 max-pools, then one linear
/// layer 256 -> classes. 2,456,778 parameters for 1 channel and 10 classes.
class AlexNetImpl : public Network {
public:
  AlexNetImpl(int64_t in_channels = 1, int64_t num_classes = 10);
  torch::Tensor forward(torch::Tensor x) override;

private:
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(AlexNet);

} // namespace pnn::models
