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
