#include <pnn/training/parameters.hpp>

#include <pnn/error.hpp>

#include <torch/torch.h>

#include <cmath>
#include <algorithm>
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
  // Blocks without an early exit, so that the compiler vectorises the test (all
  // exponent bits set: an infinity or a NaN); the first bad value is then found
  // in its block. (A 37 MB VGG11 update is checked on every push.)
  constexpr uint64_t block = 4096;
  const char* data = bytes.data();
  for (uint64_t start = 0; start < count; start += block) {
    const uint64_t end = std::min(count, start + block);
    uint32_t bad = 0;
    for (uint64_t i = start; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, data + i * sizeof(float), sizeof bits);
      bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (bad == 0)
      continue;
    for (uint64_t i = start; i < end; ++i) {
      float v;
      std::memcpy(&v, data + i * sizeof(float), sizeof v);
      if (!std::isfinite(v))
        return "value " + std::to_string(i) + " is not finite";
    }
  }
  return "";
}

float finite_max_abs(const char* data, uint64_t count) {
  // On integers: a float reduction keeps its order without -ffast-math, and the
  // magnitudes' bits order as the magnitudes do.
  uint32_t bad = 0;
  int32_t most = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i * sizeof(float), sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    const auto magnitude = static_cast<int32_t>(bits & 0x7fffffffu);
    most = magnitude > most ? magnitude : most;
  }
  float out;
  std::memcpy(&out, &most, sizeof out);
  return bad != 0 ? -1.0f : out;
}

float add_scaled(const float* base, const char* delta, float k, float* out, uint64_t count,
                 float* delta_max_abs) {
  uint32_t bad = 0, bad_delta = 0;
  int32_t most = 0, most_delta = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t dbits;
    std::memcpy(&dbits, delta + i * sizeof(float), sizeof dbits);
    float v;
    std::memcpy(&v, &dbits, sizeof v);
    const float sum = base[i] + k * v;
    out[i] = sum;
    uint32_t bits;
    std::memcpy(&bits, &sum, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    bad_delta |= static_cast<uint32_t>((dbits & 0x7f800000u) == 0x7f800000u);
    const auto magnitude = static_cast<int32_t>(bits & 0x7fffffffu);
    const auto delta_magnitude = static_cast<int32_t>(dbits & 0x7fffffffu);
    most = magnitude > most ? magnitude : most;
    most_delta = delta_magnitude > most_delta ? delta_magnitude : most_delta;
  }
  if (delta_max_abs) {
    std::memcpy(delta_max_abs, &most_delta, sizeof most_delta);
    if (bad_delta != 0)
      *delta_max_abs = -1.0f;
  }
  float m;
  std::memcpy(&m, &most, sizeof m);
  return bad != 0 ? -1.0f : m;
}

} // namespace pnn::training
