#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <utility>

namespace pnn::models {

/// Base of every pnn network: a LibTorch module whose forward maps a float batch
/// NxCxHxW to class logits NxK. Concrete models follow LibTorch's `NameImpl` +
/// `TORCH_MODULE(Name)` convention and derive from this.
class Network : public torch::nn::Module {
public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;

  /// The registry name the model was built under by make_model ("" when built
  /// directly). HOGWILD builds its per-worker replicas by this name.
  const std::string& registry_name() const {
    return registry_name_;
  }
  void set_registry_name(std::string name) {
    registry_name_ = std::move(name);
  }

private:
  std::string registry_name_;
};

/// A model instance. Copying the pointer shares the model (HOGWILD does that on
/// purpose); use the registry to build an independent one.
using network_ptr = std::shared_ptr<Network>;

/// Number of trainable scalars in a module.
int64_t parameter_count(const torch::nn::Module& module);

} // namespace pnn::models
