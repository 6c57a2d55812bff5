#pragma once

#include <pnn/models/network.hpp>

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

namespace pnn::models {

/// VGG for 32x32 inputs with batch norm after every 3x3 convolution and a single
/// 512 -> classes classifier. `depth` is 11, 13, 16 or 19 (9,231,114 / 9,416,010 /
/// 14,728,266 / 20,040,522 parameters for 3 channels, 10 classes).
class VGGImpl : public Network {
public:
  VGGImpl(int depth = 11, int64_t in_channels = 3, int64_t num_classes = 10);
  torch::Tensor forward(torch::Tensor x) override;

private:
  torch::nn::Sequential features_{nullptr};
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(VGG);

} // namespace pnn::models
