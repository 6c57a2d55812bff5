#pragma once

// Compressed SGD updates (sgd --compress): what a worker pushes to a holder shard
// in fewer bytes, and how the holder reads it back. fp16 and bf16 send each value
// in 2 bytes; top-k sends the k values largest in magnitude with their indices.
// The worker keeps what compression dropped (error feedback: Seide et al. 2014,
// Stich et al. 2018) and adds it to its next push, so nothing is lost for good.

#include <pnn/actors/protocol.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pnn {

/// How a param_update's values travel (param_update::encoding).
enum class update_encoding : uint8_t { raw = 0, fp16 = 1, bf16 = 2, topk = 3 };

/// A push's compression: parsed from "none", "fp16", "bf16" or "topk:F" (F: the
/// fraction of values sent, 0 < F <= 1). Throws pnn::error naming --compress.
struct compression {
  update_encoding encoding = update_encoding::raw;
  double fraction = 1.0; ///< top-k: k = max(1, round(fraction x count))
  static compression parse(const std::string& text);
  std::string name() const;
};

/// Float32 to IEEE half (round to nearest even; beyond 65504 to infinity) and back.
uint16_t to_half(float v);
float from_half(uint16_t h);
/// Float32 to bfloat16 (round to nearest even) and back.
uint16_t to_bf16(float v);
float from_bf16(uint16_t b);

/// Encodes `count` values (and their squares, when not null) into `u` (bytes,
/// squares, indices, encoding). With error feedback, `residual` (count values,
/// added to the values first) keeps what the encoding dropped.
void encode_update(const compression& c, const float* values, const float* squares,
                   uint64_t count, std::vector<float>& residual, param_update& u);

/// Turns an encoded update back into raw float32 bytes (and squares), in place;
/// "" when it did, else why not (sizes that do not fit the count, indices out of
/// range or not increasing), leaving `u` as it was.
std::string decode_update(param_update& u);

} // namespace pnn
