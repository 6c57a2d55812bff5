#include <pnn/models/kernels.hpp>
#include <pnn/models/lenet.hpp>

#include <torch/torch.h>

namespace pnn::models {

namespace nn = torch::nn;

int64_t parameter_count(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    n += p.numel();
  return n;
}

LeNetImpl::LeNetImpl(int64_t in_channels, int64_t num_classes) {
  conv1_ = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, 6, 5)));
  conv2_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(6, 16, 5)));
  fc1_ = register_module("fc1", nn::Linear(16 * 5 * 5, 120));
  fc2_ = register_module("fc2", nn::Linear(120, 84));
  fc3_ = register_module("fc3", nn::Linear(84, num_classes));
}

torch::Tensor LeNetImpl::forward(torch::Tensor x) {
  x = torch::relu(max_pool2x2(conv1_(x))); // (max and ReLU commute: see LeNet5)
  x = torch::relu(max_pool2x2(conv2_(x)));
  x = x.flatten(1);
  x = torch::relu(fc1_(x));
  x = torch::relu(fc2_(x));
  return fc3_(x);
}

} // namespace pnn::models
