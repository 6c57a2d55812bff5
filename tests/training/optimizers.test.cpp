#include <torch/torch.h>

#define CAF_SUITE training.optimizers
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/optimizers.hpp>

using namespace pnn;
using namespace pnn::training;

namespace {

/// One step of `opt` on f(w) = w^2/2 (gradient w) from w = 1; returns w.
std::vector<double> steps(const std::string& spec, double lr, int n) {
  auto w = torch::ones({1}, torch::requires_grad());
  auto opt = make_optimizer(optimizer_options::parse(spec, lr), {w});
  std::vector<double> result;
  for (int i = 0; i < n; ++i) {
    opt->zero_grad();
    (w * w / 2).sum().backward();
    opt->step();
    result.push_back(w.item<double>());
  }
  return result;
}

} // namespace

CAF_TEST(plain SGD moves against the gradient) {
  auto w = steps("sgd", 0.1, 2);
  CAF_CHECK(std::abs(w[0] - 0.9) < 1e-6);
  CAF_CHECK(std::abs(w[1] - 0.81) < 1e-6);
}

CAF_TEST(SGD with momentum and nesterov follows the textbook update) {
  // momentum 0.5: v1 = g1 = 1, w1 = 1 - 0.1*1 = 0.9; v2 = 0.5*1 + 0.9 = 1.4, w2 = 0.9 - 0.14.
  auto m = steps("sgd:momentum=0.5", 0.1, 2);
  CAF_CHECK(std::abs(m[1] - 0.76) < 1e-6);
  // nesterov: step uses g + mu*v: w1 = 1 - 0.1*(1 + 0.5*1) = 0.85.
  auto n = steps("sgd:momentum=0.5,nesterov=1", 0.1, 1);
  CAF_CHECK(std::abs(n[0] - 0.85) < 1e-6);
}

CAF_TEST(the first Adam step moves by about lr) {
  auto w = steps("adam", 0.01, 1);
  CAF_CHECK(std::abs(w[0] - 0.99) < 1e-6);
}

CAF_TEST(weight decay adds to the gradient in SGD and decouples in AdamW) {
  auto sgd = steps("sgd:weight_decay=1", 0.1, 1); // gradient 1 + 1*1 = 2
  CAF_CHECK(std::abs(sgd[0] - 0.8) < 1e-6);
  auto adamw = steps("adamw:weight_decay=0.5", 0.01, 1); // w*(1-0.005) - 0.01
  CAF_CHECK(std::abs(adamw[0] - (0.995 - 0.01)) < 1e-6);
}

CAF_TEST(the learning rate can be read and set on every group) {
  auto w = torch::ones({1}, torch::requires_grad());
  auto opt = make_optimizer(optimizer_options::parse("adam", 1e-3), {w});
  CAF_CHECK_EQUAL(learning_rate(*opt), 1e-3);
  set_learning_rate(*opt, 5e-4);
  CAF_CHECK_EQUAL(learning_rate(*opt), 5e-4);
}

CAF_TEST(bad optimizer specs are errors) {
  auto [code, msg] = test::error_of([] { optimizer_options::parse("rmsprop", 1e-3); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "adam, adamw or sgd"));
  auto [code2, msg2] = test::error_of([] { optimizer_options::parse("sgd:nesterov=1", 1e-3); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "momentum"));
  auto [code3, msg3] = test::error_of([] { optimizer_options::parse("adam", -1); });
  CAF_CHECK(code3 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg3, "--lr"));
  auto [code4, msg4] = test::error_of([] { optimizer_options::parse("adam:beta=0.9", 1e-3); });
  CAF_CHECK(code4 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg4, "beta"));
}

namespace {

/// The same random start for a few parameter tensors of several shapes.
std::vector<torch::Tensor> parameters(uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> p;
  for (auto shape : {std::vector<int64_t>{7, 5}, {13}, {3, 3, 3, 3}, {1}})
    p.push_back(torch::randn(shape).requires_grad_(true));
  return p;
}

/// Largest |a - b| / (1e-3 + |b|) over the values of two tensor lists.
double max_relative_difference(const std::vector<torch::Tensor>& a,
                               const std::vector<torch::Tensor>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, ((a[i] - b[i]).abs() / (1e-3 + b[i].abs())).max().item<double>());
  return worst;
}

/// The state tensors of `opt` for `params` (Adam: both moments; SGD: the buffer).
std::vector<torch::Tensor> state_tensors(torch::optim::Optimizer& opt,
                                         const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    auto it = opt.state().find(c10::guts::to_string(p.unsafeGetTensorImpl()));
    if (it == opt.state().end())
      continue; // (SGD without momentum keeps none)
    auto& s = *it->second;
    if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(&s)) {
      out.push_back(adam->exp_avg());
      out.push_back(adam->exp_avg_sq());
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(&s)) {
      out.push_back(adamw->exp_avg());
      out.push_back(adamw->exp_avg_sq());
    } else {
      out.push_back(static_cast<torch::optim::SGDParamState&>(s).momentum_buffer());
    }
  }
  return out;
}

/// LibTorch's own optimizer for the same options.
std::unique_ptr<torch::optim::Optimizer> libtorch_optimizer(const optimizer_options& o,
                                                            std::vector<torch::Tensor> params) {
  namespace optim = torch::optim;
  if (o.name == "adam")
    return std::make_unique<optim::Adam>(params, optim::AdamOptions(o.lr)
                                                   .betas({o.beta1, o.beta2})
                                                   .eps(o.eps)
                                                   .weight_decay(o.weight_decay)
                                                   .amsgrad(o.amsgrad));
  if (o.name == "adamw")
    return std::make_unique<optim::AdamW>(params, optim::AdamWOptions(o.lr)
                                                    .betas({o.beta1, o.beta2})
                                                    .eps(o.eps)
                                                    .weight_decay(o.weight_decay)
                                                    .amsgrad(o.amsgrad));
  return std::make_unique<optim::SGD>(params, optim::SGDOptions(o.lr)
                                                .momentum(o.momentum)
                                                .nesterov(o.nesterov)
                                                .weight_decay(o.weight_decay));
}

} // namespace

CAF_TEST(every optimizer follows LibTorch own step over 50 steps) {
  for (const char* spec : {"adam", "adam:weight_decay=0.01", "adam:amsgrad=1", "adamw",
                           "adamw:weight_decay=0.3", "sgd", "sgd:weight_decay=0.01",
                           "sgd:momentum=0.9", "sgd:momentum=0.5,nesterov=1,weight_decay=1e-3"}) {
    CAF_MESSAGE(spec);
    auto o = optimizer_options::parse(spec, 0.01);
    auto mine = parameters(7), theirs = parameters(7);
    auto a = make_optimizer(o, mine);
    auto b = libtorch_optimizer(o, theirs);
    for (int step = 0; step < 50; ++step) {
      for (size_t i = 0; i < mine.size(); ++i) {
        auto g = torch::randn(mine[i].sizes()) * (1 + step % 3);
        mine[i].mutable_grad() = g.clone();
        theirs[i].mutable_grad() = g.clone();
      }
      a->step();
      b->step();
    }
    CAF_CHECK_LESS(max_relative_difference(mine, theirs), 1e-4);
    CAF_CHECK_LESS(max_relative_difference(state_tensors(*a, mine), state_tensors(*b, theirs)),
                   1e-4);
    // And they moved: the comparison is not between two unchanged copies.
    CAF_CHECK_GREATER(max_relative_difference(mine, parameters(7)), 1e-2);
  }
}

CAF_TEST(an optimizer skips a parameter without a gradient as LibTorch does) {
  auto p = parameters(8);
  auto start = p[1].detach().clone();
  auto opt = make_optimizer(optimizer_options::parse("adam", 0.1), p);
  for (auto& t : p)
    t.mutable_grad() = torch::ones_like(t);
  p[1].mutable_grad().reset();
  opt->step();
  CAF_CHECK(torch::equal(p[1], start));
  CAF_CHECK_EQUAL(opt->state().count(c10::guts::to_string(p[1].unsafeGetTensorImpl())), 0u);
  CAF_CHECK_EQUAL(opt->state().size(), 3u);
}

CAF_TEST(an optimizer state saved by pnn loads into LibTorch and goes on alike) {
  for (const char* spec : {"adam", "adamw", "sgd:momentum=0.9"}) {
  CAF_MESSAGE(spec);
  auto o = optimizer_options::parse(spec, 0.01);
  auto mine = parameters(9);
  auto a = make_optimizer(o, mine);
  for (int step = 0; step < 3; ++step) {
    for (auto& t : mine)
      t.mutable_grad() = torch::randn(t.sizes());
    a->step();
  }
  std::stringstream bytes;
  torch::serialize::OutputArchive out;
  a->save(out);
  out.save_to(bytes);
  std::vector<torch::Tensor> theirs;
  for (const auto& t : mine)
    theirs.push_back(t.detach().clone().requires_grad_(true));
  auto b = libtorch_optimizer(o, theirs);
  torch::serialize::InputArchive in;
  in.load_from(bytes);
  b->load(in);
  for (size_t i = 0; i < mine.size(); ++i) {
    auto g = torch::randn(mine[i].sizes());
    mine[i].mutable_grad() = g.clone();
    theirs[i].mutable_grad() = g.clone();
  }
  a->step();
  b->step();
  CAF_CHECK_LESS(max_relative_difference(mine, theirs), 1e-5);
  // Each optimizer's own state type (AdamW's is not Adam's), four steps in.
  auto& s = *a->state().at(c10::guts::to_string(mine[0].unsafeGetTensorImpl()));
  if (o.name == "adam") {
    auto* st = dynamic_cast<torch::optim::AdamParamState*>(&s);
    CAF_REQUIRE(st != nullptr);
    CAF_CHECK_EQUAL(st->step(), 4);
  } else if (o.name == "adamw") {
    auto* st = dynamic_cast<torch::optim::AdamWParamState*>(&s);
    CAF_REQUIRE(st != nullptr);
    CAF_CHECK_EQUAL(st->step(), 4);
  } else {
    CAF_CHECK(dynamic_cast<torch::optim::SGDParamState*>(&s) != nullptr);
  }
  }
}
