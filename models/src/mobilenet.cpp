#include <pnn/models/mobilenet.hpp>

#include <pnn/models/kernels.hpp>

#include <torch/torch.h>

#include <utility>

namespace pnn::models {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

/// Depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU.
class SeparableBlockImpl : public nn::Module {
public:
  SeparableBlockImpl(int64_t in, int64_t out, int64_t stride) {
    depthwise_ = register_module(
      "conv1",
      nn::Conv2d(nn::Conv2dOptions(in, in, 3).stride(stride).padding(1).groups(in).bias(false)));
    bn1_ = register_module("bn1", FastBatchNorm2d(in));
    pointwise_ = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)));
    bn2_ = register_module("bn2", FastBatchNorm2d(out));
  }

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1_(depthwise_(x)));
    return torch::relu(bn2_(pointwise_(x)));
  }

private:
  nn::Conv2d depthwise_{nullptr}, pointwise_{nullptr};
  FastBatchNorm2d bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(SeparableBlock);

} // namespace

MobileNetImpl::MobileNetImpl(int64_t in_channels, int64_t num_classes) {
  conv1_ = register_module(
    "conv1", nn::Conv2d(nn::Conv2dOptions(in_channels, 32, 3).padding(1).bias(false)));
  bn1_ = register_module("bn1", FastBatchNorm2d(32));
  // (out channels, stride) of the 13 separable blocks.
  const std::pair<int64_t, int64_t> cfg[] = {{64, 1},  {128, 2},  {128, 1}, {256, 2}, {256, 1},
                                             {512, 2}, {512, 1},  {512, 1}, {512, 1}, {512, 1},
                                             {512, 1}, {1024, 2}, {1024, 1}};
  nn::Sequential layers;
  int64_t in = 32;
  for (auto [out, stride] : cfg) {
    layers->push_back(SeparableBlock(in, out, stride));
    in = out;
  }
  layers_ = register_module("layers", layers);
  linear_ = register_module("linear", nn::Linear(1024, num_classes));
}

torch::Tensor MobileNetImpl::forward(torch::Tensor x) {
  x = torch::relu(bn1_(conv1_(x)));
  x = layers_->forward(x);
  x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions(1));
  return linear_(x.flatten(1));
}

} // namespace pnn::models
