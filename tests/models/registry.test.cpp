#include <torch/torch.h>

#define CAF_SUITE models.registry
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/models/lenet5.hpp>
#include <pnn/models/registry.hpp>

using namespace pnn;
using namespace pnn::models;

namespace {

struct expected_model {
  const char* name;
  int64_t channels;
  int64_t parameters;
};

// PyTorch 1.13's counts for the same architectures, 10 classes.
const expected_model table[] = {
  {"lenet", 3, 62006},   {"lenet5", 1, 61750},  {"alexnet", 1, 2456778}, {"mobilenet", 3, 3217226},
  {"vgg11", 3, 9231114}, {"vgg13", 3, 9416010}, {"vgg16", 3, 14728266},  {"vgg19", 3, 20040522},
};

} // namespace

CAF_TEST(every model has the reference parameter count and maps 32x32 inputs to logits) {
  torch::NoGradGuard no_grad;
  for (const auto& m : table) {
    CAF_MESSAGE("model " << m.name);
    auto net = make_model(m.name, m.channels, 10);
    CAF_CHECK_EQUAL(parameter_count(*net), m.parameters);
    net->eval();
    auto out = net->forward(torch::randn({2, m.channels, 32, 32}));
    CAF_CHECK_EQUAL(out.size(0), 2);
    CAF_CHECK_EQUAL(out.size(1), 10);
  }
}

CAF_TEST(models take in_channels and num_classes) {
  torch::NoGradGuard no_grad;
  auto net = make_model("LeNet", 1, 7);
  net->eval();
  auto out = net->forward(torch::randn({3, 1, 32, 32}));
  CAF_CHECK_EQUAL(out.size(1), 7);
  // LeNet at 1 channel: conv1 has 6*1*25+6 instead of 6*3*25+6 parameters, fc3 84*7+7.
  CAF_CHECK_EQUAL(parameter_count(*net), 62006 - 300 - 850 + 595);
}

CAF_TEST(an unknown model name is an error that lists the valid names) {
  auto [code, msg] = test::error_of([] { make_model("resnet50", 3, 10); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "resnet50"));
  CAF_CHECK(test::contains(msg, "lenet5"));
  CAF_CHECK(test::contains(msg, "vgg19"));
  CAF_CHECK(!has_model("resnet50"));
  CAF_CHECK(has_model("VGG11"));
}

CAF_TEST(each call builds an independent model) {
  auto a = make_model("lenet5", 1, 10);
  auto b = make_model("lenet5", 1, 10);
  auto pa = a->parameters().front();
  auto pb = b->parameters().front();
  CAF_CHECK(pa.data_ptr() != pb.data_ptr());
  auto before = pb.clone();
  {
    torch::NoGradGuard no_grad;
    pa.add_(1.0);
  }
  CAF_CHECK(torch::equal(pb, before));
}

CAF_TEST(user models can be registered by name) {
  register_model("tiny-lenet5", "test model",
                 [](int64_t in, int64_t k) -> network_ptr { return LeNet5(in, k).ptr(); });
  CAF_CHECK(has_model("tiny-lenet5"));
  auto net = make_model("tiny-lenet5", 1, 3);
  CAF_CHECK_EQUAL(parameter_count(*net), 61750 - 850 + 255);
  bool listed = false;
  for (const auto& info : list_models())
    listed = listed || info.name == "tiny-lenet5";
  CAF_CHECK(listed);
}
