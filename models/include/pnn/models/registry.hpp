#pragma once

#include <pnn/models/network.hpp>

#include <functional>
#include <string>
#include <vector>

namespace pnn::models {

/// Builds a fresh, independently initialised model.
using model_factory = std::function<network_ptr(int64_t in_channels, int64_t num_classes)>;

/// What the registry knows about a model.
struct model_info {
  std::string name;
  std::string description;
};

/// Builds a fresh model by name (case-insensitive: "lenet5", "vgg11", ...).
/// Throws pnn::error(invalid_argument) naming the valid models for an unknown name.
network_ptr make_model(const std::string& name, int64_t in_channels, int64_t num_classes);

/// Adds (or replaces) a model under `name`, for user-defined networks.
void register_model(const std::string& name, std::string description, model_factory factory);

/// True if `name` is registered.
bool has_model(const std::string& name);

/// Every registered model, sorted by name.
std::vector<model_info> list_models();

} // namespace pnn::models
