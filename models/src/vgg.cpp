#include <pnn/models/vgg.hpp>

#include <pnn/error.hpp>
#include <pnn/models/kernels.hpp>

#include <torch/torch.h>

#include <vector>

namespace pnn::models {

namespace nn = torch::nn;

namespace {

constexpr int64_t pool = 0; // marks a 2x2 max-pool in a configuration

std::vector<int64_t> vgg_config(int depth) {
  switch (depth) {
  case 11:
    return {64, pool, 128, pool, 256, 256, pool, 512, 512, pool, 512, 512, pool};
  case 13:
    return {64, 64, pool, 128, 128, pool, 256, 256, pool, 512, 512, pool, 512, 512, pool};
  case 16:
    return {64,   64,  pool, 128, 128,  pool, 256, 256, 256,
            pool, 512, 512,  512, pool, 512,  512, 512, pool};
  case 19:
    return {64,  64,  pool, 128, 128,  pool, 256, 256, 256, 256, pool,
            512, 512, 512,  512, pool, 512,  512, 512, 512, pool};
  default:
    throw pnn::error(error_code::invalid_argument,
                     "VGG depth " + std::to_string(depth) + ": expected 11, 13, 16 or 19");
  }
}

} // namespace

VGGImpl::VGGImpl(int depth, int64_t in_channels, int64_t num_classes) {
  nn::Sequential features;
  int64_t in = in_channels;
  for (int64_t c : vgg_config(depth)) {
    if (c == pool) {
      features->push_back(MaxPool2x2());
      continue;
    }
    features->push_back(nn::Conv2d(nn::Conv2dOptions(in, c, 3).padding(1)));
    features->push_back(FastBatchNorm2d(c));
    features->push_back(nn::ReLU(nn::ReLUOptions(true)));
    in = c;
  }
  features_ = register_module("features", features);
  classifier_ = register_module("classifier", nn::Linear(512, num_classes));
}

torch::Tensor VGGImpl::forward(torch::Tensor x) {
  return classifier_(features_->forward(x).flatten(1));
}

} // namespace pnn::models
