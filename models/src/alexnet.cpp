#include <pnn/models/alexnet.hpp>

#include <pnn/models/kernels.hpp>

#include <torch/torch.h>

namespace pnn::models {

namespace nn = torch::nn;

AlexNetImpl::AlexNetImpl(int64_t in_channels, int64_t num_classes) {
  features_ = register_module(
    "features",
    nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(in_channels, 64, 11).stride(4).padding(5)),
      nn::ReLU(nn::ReLUOptions(true)), MaxPool2x2(),
      nn::Conv2d(nn::Conv2dOptions(64, 192, 5).padding(2)), nn::ReLU(nn::ReLUOptions(true)),
      MaxPool2x2(), nn::Conv2d(nn::Conv2dOptions(192, 384, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), nn::Conv2d(nn::Conv2dOptions(384, 256, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), MaxPool2x2()));
  classifier_ = register_module("classifier", nn::Linear(256, num_classes));
}

torch::Tensor AlexNetImpl::forward(torch::Tensor x) {
  return classifier_(features_->forward(x).flatten(1));
}

} // namespace pnn::models
