#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace torch::optim {
class Optimizer;
}

namespace pnn::training {

/// An optimizer by name with its settings. Names: adam, adamw, sgd.
struct optimizer_options {
  std::string name = "adam";
  double lr = 1e-3;
  double weight_decay = 0.0; ///< adamw defaults to 1e-2 when left at 0 and unset
  double momentum = 0.0;     ///< sgd only
  bool nesterov = false;     ///< sgd only (needs momentum > 0)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  bool amsgrad = false;

  /// Parses "adam", "sgd:momentum=0.9,nesterov=1,weight_decay=5e-4", ... with `lr`
  /// given separately (--lr). Throws pnn::error on unknown names or parameters.
  static optimizer_options parse(const std::string& text, double lr);
};

/// A LibTorch optimizer over `params` as `options` say.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const optimizer_options& options,
                                                        std::vector<torch::Tensor> params);

/// Sets the learning rate of every parameter group.
void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

/// The learning rate of the first parameter group.
double learning_rate(const torch::optim::Optimizer& optimizer);

} // namespace pnn::training
