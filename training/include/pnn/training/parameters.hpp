#pragma once

// A model's parameters as flat float32 bytes, the form in which they travel between
// hosts (DESIGN.md: raw bytes cross CAF's network ~25x faster than a vector<float>,
// and keep NaN/Inf intact so that they can be checked on arrival).

#include <cstdint>
#include <string>
#include <vector>

namespace torch::nn {
class Module;
}

namespace pnn::training {

/// A fingerprint of the parameters' names and shapes (FNV-1a): two models agree
/// on it exactly when their parameter bytes have the same layout.
uint64_t layout_hash(const torch::nn::Module& module);

/// Number of float32 values in the module's parameters.
int64_t parameter_floats(const torch::nn::Module& module);

/// Every parameter, in registration order, as float32 bytes in this host's byte order.
std::vector<char> parameter_bytes(const torch::nn::Module& module);

/// Overwrites the module's parameters from parameter_bytes' layout. Throws
/// pnn::error(invalid_argument) when the byte count does not fit.
void load_parameter_bytes(torch::nn::Module& module, const std::vector<char>& bytes);

/// Why `bytes` is not `count` finite float32 values, or "" when it is.
std::string check_floats(const std::vector<char>& bytes, uint64_t count);

/// The largest magnitude of `count` float32 values at `data` (any alignment), or
/// a negative number when one is not finite. Vectorised: one pass at memory speed.
float finite_max_abs(const char* data, uint64_t count);

/// out[i] = base[i] + k * delta[i] for `count` values (`out` may be `base`; `delta`
/// float32 values at any alignment). Returns the sums' largest magnitude, or a
/// negative number when a sum is not finite (all sums are written either way);
/// `delta_max_abs`, when given, gets finite_max_abs of the deltas from the same
/// pass. Vectorised: one pass at memory speed.
float add_scaled(const float* base, const char* delta, float k, float* out, uint64_t count,
                 float* delta_max_abs = nullptr);

} // namespace pnn::training
