#pragma once

#include <pnn/models/network.hpp>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

namespace pnn::models {

/// LeNet for 32x32 inputs: conv 6 and 16 (5x5, ReLU, 2x2 max-pool), then fully
/// connected 120, 84, classes; no batch norm. 62,006 parameters for 3 channels, 10 classes.
class LeNetImpl : public Network {
public:
  LeNetImpl(int64_t in_channels = 3, int64_t num_classes = 10);
  torch::Tensor forward(torch::Tensor x) override;

private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr}, fc3_{nullptr};
};
TORCH_MODULE(LeNet);

} // namespace pnn::models
