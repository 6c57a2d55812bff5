#include <pnn/models/registry.hpp>

#include <pnn/error.hpp>
#include <pnn/models/alexnet.hpp>
#include <pnn/models/lenet.hpp>
#include <pnn/models/lenet5.hpp>
#include <pnn/models/mobilenet.hpp>
#include <pnn/models/vgg.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>

namespace pnn::models {

namespace {

struct entry {
  std::string description;
  model_factory factory;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

template <class Module, class... Ts>
model_factory factory_of(Ts... fixed) {
  return [=](int64_t in_channels, int64_t num_classes) -> network_ptr {
    return Module(fixed..., in_channels, num_classes).ptr();
  };
}

struct registry {
  std::mutex mtx;
  std::map<std::string, entry> entries;

  registry() {
    entries["lenet"] = {"LeNet, no batch norm (62,006 params at 3x32x32)", factory_of<LeNet>()};
    entries["lenet5"] = {"LeNet5 with batch norm (61,750 params at 1x32x32)", factory_of<LeNet5>()};
    entries["alexnet"] = {"AlexNet, CIFAR variant (2,456,778 params at 1x32x32)",
                          factory_of<AlexNet>()};
    entries["mobilenet"] = {"MobileNet v1, CIFAR variant (3,217,226 params at 3x32x32)",
                            factory_of<MobileNet>()};
    entries["vgg11"] = {"VGG11 with batch norm (9,231,114 params)", factory_of<VGG>(11)};
    entries["vgg13"] = {"VGG13 with batch norm (9,416,010 params)", factory_of<VGG>(13)};
    entries["vgg16"] = {"VGG16 with batch norm (14,728,266 params)", factory_of<VGG>(16)};
    entries["vgg19"] = {"VGG19 with batch norm (20,040,522 params)", factory_of<VGG>(19)};
  }
};

registry& instance() {
  static registry r;
  return r;
}

} // namespace

network_ptr make_model(const std::string& name, int64_t in_channels, int64_t num_classes) {
  if (in_channels <= 0 || num_classes <= 0)
    throw pnn::error(error_code::invalid_argument,
                     "model " + name + ": in_channels and num_classes must be positive");
  model_factory factory;
  {
    auto& r = instance();
    std::lock_guard<std::mutex> guard{r.mtx};
    auto i = r.entries.find(lower(name));
    if (i == r.entries.end()) {
      std::string valid;
      for (const auto& kv : r.entries)
        valid += (valid.empty() ? "" : ", ") + kv.first;
      throw pnn::error(error_code::invalid_argument,
                       "unknown model '" + name + "': expected one of " + valid);
    }
    factory = i->second.factory;
  }
  auto net = factory(in_channels, num_classes);
  if (!net)
    throw pnn::error(error_code::invalid_argument, "model " + name + ": its factory returned none");
  net->set_registry_name(lower(name));
  return net;
}

void register_model(const std::string& name, std::string description, model_factory factory) {
  auto& r = instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  r.entries[lower(name)] = {std::move(description), std::move(factory)};
}

bool has_model(const std::string& name) {
  auto& r = instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  return r.entries.count(lower(name)) > 0;
}

std::vector<model_info> list_models() {
  auto& r = instance();
  std::lock_guard<std::mutex> guard{r.mtx};
  std::vector<model_info> result;
  for (const auto& kv : r.entries)
    result.push_back({kv.first, kv.second.description});
  return result;
}

} // namespace pnn::models
