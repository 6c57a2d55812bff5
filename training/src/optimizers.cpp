#include <pnn/training/optimizers.hpp>

#include <pnn/error.hpp>
#include <pnn/training/spec.hpp>

#include <torch/torch.h>

namespace pnn::training {

optimizer_options optimizer_options::parse(const std::string& text, double lr) {
  auto s = spec::parse(text, "--optimizer");
  optimizer_options o;
  o.name = s.name;
  o.lr = lr;
  if (!(lr > 0))
    throw pnn::error(error_code::invalid_argument,
                     "--lr " + std::to_string(lr) + ": expected a positive learning rate");
  if (o.name == "adam" || o.name == "adamw") {
    o.weight_decay = s.take_number("weight_decay", o.name == "adamw" ? 1e-2 : 0.0);
    o.beta1 = s.take_number("beta1", o.beta1);
    o.beta2 = s.take_number("beta2", o.beta2);
    o.eps = s.take_number("eps", o.eps);
    o.amsgrad = s.take_bool("amsgrad", false);
  } else if (o.name == "sgd") {
    o.momentum = s.take_number("momentum", 0.0);
    o.nesterov = s.take_bool("nesterov", false);
    o.weight_decay = s.take_number("weight_decay", 0.0);
    if (o.nesterov && o.momentum <= 0)
      throw pnn::error(error_code::invalid_argument,
                       "--optimizer " + text + ": nesterov needs momentum > 0");
  } else {
    throw pnn::error(error_code::invalid_argument,
                     "--optimizer '" + o.name + "': expected adam, adamw or sgd");
  }
  s.expect_consumed();
  if (o.weight_decay < 0 || o.momentum < 0)
    throw pnn::error(error_code::invalid_argument,
                     "--optimizer " + text + ": weight_decay and momentum must be >= 0");
  return o;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const optimizer_options& o,
                                                        std::vector<torch::Tensor> params) {
  namespace optim = torch::optim;
  if (o.name == "adam")
    return std::make_unique<optim::Adam>(std::move(params),
                                         optim::AdamOptions(o.lr)
                                           .betas({o.beta1, o.beta2})
                                           .eps(o.eps)
                                           .weight_decay(o.weight_decay)
                                           .amsgrad(o.amsgrad));
  if (o.name == "adamw")
    return std::make_unique<optim::AdamW>(std::move(params),
                                          optim::AdamWOptions(o.lr)
                                            .betas({o.beta1, o.beta2})
                                            .eps(o.eps)
                                            .weight_decay(o.weight_decay)
                                            .amsgrad(o.amsgrad));
  if (o.name == "sgd")
    return std::make_unique<optim::SGD>(std::move(params),
                                        optim::SGDOptions(o.lr)
                                          .momentum(o.momentum)
                                          .nesterov(o.nesterov)
                                          .weight_decay(o.weight_decay));
  throw pnn::error(error_code::invalid_argument,
                   "optimizer '" + o.name + "': expected adam, adamw or sgd");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    group.options().set_lr(lr);
}

double learning_rate(const torch::optim::Optimizer& optimizer) {
  return optimizer.param_groups().at(0).options().get_lr();
}

} // namespace pnn::training
