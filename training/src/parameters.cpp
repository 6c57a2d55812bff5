#include <pnn/training/parameters.hpp>

#include <pnn/error.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstring>

namespace pnn::training {

namespace {

void mix(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
}

} // namespace

uint64_t layout_hash(const torch::nn::Module& module) {
  uint64_t h = 14695981039346656037ull;
  for (const auto& p : module.named_parameters()) {
    mix(h, p.key().data(), p.key().size());
    for (auto d : p.value().sizes()) {
      int64_t v = d;
      mix(h, &v, sizeof v);
    }
    const char sep = ';';
    mix(h, &sep, 1);
  }
  return h;
}

int64_t parameter_floats(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    n += p.numel();
  return n;
}

std::vector<char> parameter_bytes(const torch::nn::Module& module) {
  std::vector<char> out(static_cast<size_t>(parameter_floats(module)) * sizeof(float));
  size_t offset = 0;
  for (const auto& p : module.parameters()) {
    auto t = p.detach().to(torch::kFloat32).contiguous();
    const size_t n = static_cast<size_t>(t.numel()) * sizeof(float);
    std::memcpy(out.data() + offset, t.data_ptr<float>(), n);
    offset += n;
  }
  return out;
}

void load_parameter_bytes(torch::nn::Module& module, const std::vector<char>& bytes) {
  const auto expected = static_cast<size_t>(parameter_floats(module)) * sizeof(float);
  if (bytes.size() != expected)
    throw pnn::error(error_code::invalid_argument,
                     "parameters: " + std::to_string(bytes.size()) + " bytes, expected "
                       + std::to_string(expected));
  torch::NoGradGuard no_grad;
  size_t offset = 0;
  for (auto& p : module.parameters()) {
    auto src =
      torch::from_blob(const_cast<char*>(bytes.data() + offset), p.sizes(), torch::kFloat32);
    p.copy_(src);
    offset += static_cast<size_t>(p.numel()) * sizeof(float);
  }
}

std::string check_floats(const std::vector<char>& bytes, uint64_t count) {
  if (bytes.size() != count * sizeof(float))
    return std::to_string(bytes.size()) + " bytes for " + std::to_string(count)
      + " floats (expected " + std::to_string(count * sizeof(float)) + ")";
  for (uint64_t i = 0; i < count; ++i) {
    float v;
    std::memcpy(&v, bytes.data() + i * sizeof(float), sizeof v);
    if (!std::isfinite(v))
      return "value " + std::to_string(i) + " is not finite";
  }
  return "";
}

} // namespace pnn::training
