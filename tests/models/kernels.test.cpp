#include <torch/torch.h>

#define CAF_SUITE models.kernels
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/models/kernels.hpp>
#include <pnn/models/registry.hpp>

#include <limits>
#include <map>

using namespace pnn;
using namespace pnn::models;

namespace {

/// Largest |a - b| / (1 + |b|) over two tensors of the same shape.
double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  CAF_REQUIRE(a.sizes() == b.sizes());
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs()
          / (1 + b.to(torch::kFloat64).abs()))
    .max()
    .item<double>();
}

/// Output and input gradient of `f` at `x`, for an upstream gradient `g`.
std::pair<torch::Tensor, torch::Tensor>
value_and_grad(const std::function<torch::Tensor(const torch::Tensor&)>& f,
               const torch::Tensor& x, const torch::Tensor& g) {
  auto input = x.clone().requires_grad_(true);
  auto y = f(input);
  y.backward(g);
  return {y.detach(), input.grad()};
}

bool throws_libtorch_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error&) {
    return true;
  }
  return false;
}

void check_pool_like_libtorch(const torch::Tensor& x) {
  auto ours = [](const torch::Tensor& t) { return max_pool2x2(t); };
  auto theirs = [](const torch::Tensor& t) { return torch::max_pool2d(t, {2, 2}, {2, 2}); };
  auto g = torch::randn({x.size(0), x.size(1), x.size(2) / 2, x.size(3) / 2});
  g.view({-1}).slice(0, 0, g.numel(), 5).fill_(-0.0); // signed zeros: LibTorch's come out +0
  auto [y1, g1] = value_and_grad(ours, x, g);
  auto [y2, g2] = value_and_grad(theirs, x, g);
  // Bit for bit (the bits as integers: equal() takes -0 for +0), NaN where LibTorch
  // has NaN.
  CAF_CHECK(torch::equal(torch::isnan(y1), torch::isnan(y2)));
  CAF_CHECK(torch::equal(torch::nan_to_num(y1, 0).view(torch::kInt32),
                         torch::nan_to_num(y2, 0).view(torch::kInt32)));
  CAF_CHECK(torch::equal(g1.view(torch::kInt32), g2.view(torch::kInt32)));
}

/// A model's parameters (and, if `buffers`, its buffers) by name.
std::map<std::string, torch::Tensor> by_name(const torch::nn::Module& net, bool buffers) {
  std::map<std::string, torch::Tensor> p;
  for (const auto& kv : net.named_parameters())
    p[kv.key()] = kv.value();
  if (buffers)
    for (const auto& kv : net.named_buffers())
      p[kv.key()] = kv.value();
  return p;
}

/// LeNet5 in LibTorch's own ops in the textbook order (ReLU, then pool) from its
/// tensors by name: batch norms on the batch's statistics (`training`) or on the
/// running ones.
torch::Tensor reference_lenet5(const torch::Tensor& x, std::map<std::string, torch::Tensor>& p,
                               bool training) {
  auto bn = [&](const torch::Tensor& t, const std::string& name) {
    return training ? torch::batch_norm(t, p[name + ".weight"], p[name + ".bias"], {}, {}, true,
                                        0.1, 1e-5, false)
                    : torch::batch_norm(t, p[name + ".weight"], p[name + ".bias"],
                                        p[name + ".running_mean"], p[name + ".running_var"],
                                        false, 0.1, 1e-5, false);
  };
  auto h = torch::conv2d(x, p["conv1.weight"], p["conv1.bias"]);
  h = torch::max_pool2d(torch::relu(bn(h, "bn1")), {2, 2}, {2, 2});
  h = torch::conv2d(h, p["conv2.weight"], p["conv2.bias"]);
  h = torch::max_pool2d(torch::relu(bn(h, "bn2")), {2, 2}, {2, 2}).flatten(1);
  h = torch::relu(torch::linear(h, p["fc1.weight"], p["fc1.bias"]));
  h = torch::relu(torch::linear(h, p["fc2.weight"], p["fc2.bias"]));
  return torch::linear(h, p["fc3.weight"], p["fc3.bias"]);
}

} // namespace

CAF_TEST(the 2x2 max pool equals LibTorch max_pool2d and its gradient bit for bit) {
  torch::manual_seed(1);
  for (int threads : {1, 2}) {
    torch::set_num_threads(threads);
    CAF_MESSAGE("threads " << threads << ": random values, even and odd sizes");
    check_pool_like_libtorch(torch::randn({32, 6, 28, 28}));
    check_pool_like_libtorch(torch::randn({3, 2, 5, 7}));
    check_pool_like_libtorch(torch::randn({1, 1, 2, 2}));
    CAF_MESSAGE("ties: values from {0, 1, 2}, where the first maximum takes the gradient");
    check_pool_like_libtorch(torch::randint(0, 3, {4, 3, 8, 8}).to(torch::kFloat32));
    CAF_MESSAGE("NaN and infinities, in every lane of the four-window path and the rest");
    for (auto shape : {std::vector<int64_t>{2, 3, 6, 6}, {2, 3, 8, 20}, {1, 2, 9, 19}}) {
      auto x = torch::randn(shape);
      auto flat = x.view({-1});
      for (int64_t i = 0; i < flat.numel(); i += 7)
        flat[i] = std::numeric_limits<float>::quiet_NaN();
      for (int64_t i = 1; i < flat.numel(); i += 13) // with the stride 7 ones: two NaNs a window
        flat[i] = std::numeric_limits<float>::quiet_NaN();
      for (int64_t i = 3; i < flat.numel(); i += 11)
        flat[i] = -std::numeric_limits<float>::infinity();
      for (int64_t i = 5; i < flat.numel(); i += 17)
        flat[i] = std::numeric_limits<float>::infinity();
      x.index_put_({0, 0}, -std::numeric_limits<float>::infinity()); // a plane of -inf
      check_pool_like_libtorch(x);
    }
  }
  torch::set_num_threads(1);
}

CAF_TEST(the 2x2 max pool hands what it does not cover to LibTorch) {
  torch::manual_seed(2);
  auto d = torch::randn({2, 3, 6, 6}, torch::kFloat64); // not float32
  CAF_CHECK(torch::equal(max_pool2x2(d), torch::max_pool2d(d, {2, 2}, {2, 2})));
  auto t = torch::randn({2, 3, 6, 6}).transpose(2, 3); // not contiguous
  CAF_CHECK(torch::equal(max_pool2x2(t), torch::max_pool2d(t, {2, 2}, {2, 2})));
  auto cl = torch::randn({2, 3, 6, 6}).contiguous(torch::MemoryFormat::ChannelsLast);
  CAF_CHECK(torch::equal(max_pool2x2(cl), torch::max_pool2d(cl, {2, 2}, {2, 2})));
  auto unbatched = torch::randn({3, 6, 6});
  CAF_CHECK(torch::equal(max_pool2x2(unbatched), torch::max_pool2d(unbatched, {2, 2}, {2, 2})));
}

CAF_TEST(FastBatchNorm2d trains and evaluates as LibTorch BatchNorm2d) {
  torch::manual_seed(3);
  for (c10::optional<double> momentum : {c10::optional<double>(0.1), c10::optional<double>()}) {
    CAF_MESSAGE("momentum " << (momentum ? std::to_string(*momentum) : "none (cumulative)"));
    auto options = torch::nn::BatchNorm2dOptions(6).momentum(momentum);
    FastBatchNorm2d ours(options);
    torch::nn::BatchNorm2d theirs(options);
    {
      torch::NoGradGuard init;
      ours->weight.uniform_(0.5, 1.5);
      ours->bias.uniform_(-0.5, 0.5);
      theirs->weight.copy_(ours->weight);
      theirs->bias.copy_(ours->bias);
    }
    for (int step = 0; step < 3; ++step) {
      // Values far from zero: the statistics must keep their digits.
      auto x = torch::randn({8, 6, 10, 10}) * 3 + 100;
      auto g = torch::randn({8, 6, 10, 10});
      auto [y1, gx1] = value_and_grad([&](const torch::Tensor& t) { return ours(t); }, x, g);
      auto [y2, gx2] = value_and_grad([&](const torch::Tensor& t) { return theirs(t); }, x, g);
      CAF_CHECK_LESS(max_difference(y1, y2), 1e-4);
      CAF_CHECK_LESS(max_difference(gx1, gx2), 1e-4);
    }
    CAF_CHECK_LESS(max_difference(ours->weight.grad(), theirs->weight.grad()), 1e-4);
    CAF_CHECK_LESS(max_difference(ours->bias.grad(), theirs->bias.grad()), 1e-4);
    CAF_CHECK_LESS(max_difference(ours->running_mean, theirs->running_mean), 1e-5);
    CAF_CHECK_LESS(max_difference(ours->running_var, theirs->running_var), 1e-5);
    CAF_CHECK_EQUAL(ours->num_batches_tracked.item<int64_t>(), 3);
    CAF_CHECK_EQUAL(theirs->num_batches_tracked.item<int64_t>(), 3);
    ours->eval();
    theirs->eval();
    {
      torch::NoGradGuard copy;
      theirs->running_mean.copy_(ours->running_mean);
      theirs->running_var.copy_(ours->running_var);
    }
    auto x = torch::randn({4, 6, 5, 5}) + 100;
    CAF_CHECK(torch::equal(ours(x), theirs(x)));
  }
  CAF_MESSAGE("without running statistics, evaluation normalises by the batch");
  auto options = torch::nn::BatchNorm2dOptions(3).track_running_stats(false);
  FastBatchNorm2d ours(options);
  torch::nn::BatchNorm2d theirs(options);
  ours->eval();
  theirs->eval();
  auto x = torch::randn({4, 3, 5, 5});
  CAF_CHECK_LESS(max_difference(ours(x), theirs(x)), 1e-5);
  CAF_CHECK(!ours->running_mean.defined());
  CAF_MESSAGE("one value per channel is LibTorch's error");
  ours->train();
  CAF_CHECK(throws_libtorch_error([&] { ours(torch::randn({1, 3, 1, 1})); }));
}

CAF_TEST(a FastBatchNorm2d checkpoint loads into LibTorch BatchNorm2d) {
  torch::manual_seed(4);
  FastBatchNorm2d ours(4);
  ours(torch::randn({5, 4, 3, 3}));
  std::stringstream bytes;
  torch::save(ours, bytes);
  torch::nn::BatchNorm2d theirs(4);
  torch::load(theirs, bytes);
  CAF_CHECK(torch::equal(ours->running_mean, theirs->running_mean));
  CAF_CHECK(torch::equal(ours->running_var, theirs->running_var));
  CAF_CHECK_EQUAL(theirs->num_batches_tracked.item<int64_t>(), 1);
  // And back, with parameters of their own.
  {
    torch::NoGradGuard no_grad;
    theirs->weight.uniform_(0.5, 1.5);
    theirs->bias.uniform_(-1, 1);
  }
  theirs(torch::randn({5, 4, 3, 3}));
  std::stringstream back;
  torch::save(theirs, back);
  FastBatchNorm2d again(4);
  torch::load(again, back);
  for (auto name : {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}) {
    CAF_MESSAGE(name);
    auto a = again->named_parameters(false).contains(name) ? again->named_parameters(false)[name]
                                                           : again->named_buffers(false)[name];
    auto b = theirs->named_parameters(false).contains(name)
      ? theirs->named_parameters(false)[name]
      : theirs->named_buffers(false)[name];
    CAF_CHECK(torch::equal(a, b));
  }
}

CAF_TEST(LeNet5 computes what LibTorch ops compute from its parameters) {
  // The model pools before its ReLUs and runs the kernels above; the reference is
  // the textbook order (ReLU, then pool) in LibTorch's own ops.
  torch::manual_seed(5);
  auto net = make_model("lenet5", 1, 10);
  net->train();
  auto p = by_name(*net, false);
  auto x = torch::randn({16, 1, 32, 32});
  auto y = torch::randint(0, 10, {16});
  auto grads = [&](const torch::Tensor& logits) {
    for (auto& kv : p)
      kv.second.mutable_grad().reset();
    torch::nn::functional::cross_entropy(logits, y).backward();
    std::map<std::string, torch::Tensor> g;
    for (auto& kv : p)
      g[kv.first] = kv.second.grad().clone();
    return g;
  };
  auto ref_logits = reference_lenet5(x, p, true);
  auto ref_grads = grads(ref_logits);
  auto logits = net->forward(x);
  auto our_grads = grads(logits);
  CAF_CHECK_LESS(max_difference(logits, ref_logits), 1e-4);
  for (const auto& kv : ref_grads) {
    CAF_MESSAGE(kv.first);
    CAF_CHECK_LESS(max_difference(our_grads[kv.first], kv.second), 1e-4);
  }
}

CAF_TEST(LeNet5 in evaluation folds its batch norms into the convolutions) {
  torch::manual_seed(6);
  auto net = make_model("lenet5", 1, 10);
  auto p = by_name(*net, true);
  {
    torch::NoGradGuard no_grad;
    for (auto name : {"bn1", "bn2"}) { // statistics and an affine map far from 1 and 0
      p[std::string(name) + ".weight"].uniform_(0.5, 2);
      p[std::string(name) + ".bias"].uniform_(-1, 1);
    }
    net->train();
    for (int i = 0; i < 3; ++i)
      net->forward(torch::randn({8, 1, 32, 32}) * 2 + 0.5);
  }
  net->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({16, 1, 32, 32});
  auto reference = reference_lenet5(x, p, false);
  auto folded = net->forward(x);
  CAF_CHECK_LESS(max_difference(folded, reference), 1e-4);
  CAF_CHECK(torch::equal(folded.argmax(1), reference.argmax(1)));
  // The running statistics moved away from 0 and 1: the fold had work to do.
  CAF_CHECK_GREATER(p["bn1.running_mean"].abs().max().item<float>(), 0.05f);
}
