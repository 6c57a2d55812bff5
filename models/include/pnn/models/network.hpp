#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>

namespace pnn::models {

/// Base of every pnn network: a LibTorch module whose forward maps a float batch
/// NxCxHxW to class logits NxK. Concrete models follow LibTorch's `NameImpl` +
/// `TORCH_MODULE(Name)` convention and derive from this.
class Network : public torch::nn::Module {
public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
};

/// A model instance. Copying the pointer shares the model (HOGWILD does that on
/// purpose); use the registry to build an independent one.
using network_ptr = std::shared_ptr<Network>;

/// Number of trainable scalars in a module.
int64_t parameter_count(const torch::nn::Module& module);

} // namespace pnn::models
