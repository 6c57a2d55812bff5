#include <pnn/actors/compression.hpp>

#include <pnn/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace pnn {

compression compression::parse(const std::string& text) {
  compression c;
  auto bad = [&] {
    return pnn::error(error_code::invalid_argument,
                      "--compress '" + text + "': expected none, fp16, bf16 or topk:F with 0 < F <= 1");
  };
  if (text == "none" || text.empty())
    return c;
  if (text == "fp16") {
    c.encoding = update_encoding::fp16;
    return c;
  }
  if (text == "bf16") {
    c.encoding = update_encoding::bf16;
    return c;
  }
  if (text.rfind("topk:", 0) != 0)
    throw bad();
  const auto f = text.substr(5);
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(f, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  if (used != f.size() || !(v > 0 && v <= 1))
    throw bad();
  c.encoding = update_encoding::topk;
  c.fraction = v;
  return c;
}

std::string compression::name() const {
  switch (encoding) {
    case update_encoding::fp16:
      return "fp16";
    case update_encoding::bf16:
      return "bf16";
    case update_encoding::topk: {
      char text[32];
      std::snprintf(text, sizeof text, "topk:%g", fraction);
      return text;
    }
    default:
      return "none";
  }
}

namespace {

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

float float_of(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

void put_u16(std::vector<char>& out, size_t at, uint16_t v) {
  out[at] = static_cast<char>(v & 0xff);
  out[at + 1] = static_cast<char>(v >> 8);
}

uint16_t get_u16(const std::vector<char>& in, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(in[at])
                               | (static_cast<unsigned char>(in[at + 1]) << 8));
}

uint32_t get_u32(const std::vector<char>& in, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<unsigned char>(in[at + static_cast<size_t>(i)])) << (8 * i);
  return v;
}

} // namespace

uint16_t to_half(float v) {
  const uint32_t b = bits_of(v);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t exp = (b >> 23) & 0xffu;
  uint32_t mant = b & 0x7fffffu;
  if (exp == 0xff) // inf or NaN (a NaN keeps a mantissa bit)
    return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  const int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 31)
    return static_cast<uint16_t>(sign | 0x7c00u);
  if (e <= 0) { // subnormal half (or zero)
    if (e < -10)
      return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t half = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1)))
      ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1)))
    ++half; // may carry into the exponent, up to infinity: right
  return static_cast<uint16_t>(sign | half);
}

float from_half(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    if (mant == 0)
      return float_of(sign);
    int e = -1;
    do { // normalise the subnormal
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    return float_of(sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13));
  }
  if (exp == 31)
    return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

uint16_t to_bf16(float v) {
  const uint32_t b = bits_of(v);
  if ((b & 0x7f800000u) == 0x7f800000u && (b & 0x7fffffu)) // NaN stays NaN
    return static_cast<uint16_t>((b >> 16) | 0x40u);
  const uint32_t rounding = 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>((b + rounding) >> 16);
}

float from_bf16(uint16_t v) {
  return float_of(static_cast<uint32_t>(v) << 16);
}

void encode_update(const compression& c, const float* values, const float* squares,
                   uint64_t count, std::vector<float>& residual, param_update& u) {
  const auto n = static_cast<size_t>(count);
  u.count = count;
  u.indices.clear();
  u.encoding = static_cast<uint8_t>(c.encoding);
  if (c.encoding == update_encoding::raw) {
    u.bytes.assign(reinterpret_cast<const char*>(values),
                   reinterpret_cast<const char*>(values) + n * sizeof(float));
    if (squares)
      u.squares.assign(reinterpret_cast<const char*>(squares),
                       reinterpret_cast<const char*>(squares) + n * sizeof(float));
    else
      u.squares.clear();
    return;
  }
  if (residual.size() != n)
    residual.assign(n, 0.0f);
  // What this push should carry: the values plus what earlier pushes dropped.
  std::vector<float> want(n);
  for (size_t i = 0; i < n; ++i)
    want[i] = values[i] + residual[i];
  if (c.encoding == update_encoding::fp16 || c.encoding == update_encoding::bf16) {
    const bool half = c.encoding == update_encoding::fp16;
    u.bytes.assign(n * 2, 0);
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = half ? to_half(want[i]) : to_bf16(want[i]);
      put_u16(u.bytes, 2 * i, h);
      const float sent = half ? from_half(h) : from_bf16(h);
      residual[i] = std::isfinite(sent) ? want[i] - sent : 0.0f;
    }
    u.squares.clear();
    if (squares) {
      u.squares.assign(n * 2, 0);
      for (size_t i = 0; i < n; ++i)
        put_u16(u.squares, 2 * i, half ? to_half(squares[i]) : to_bf16(squares[i]));
    }
    return;
  }
  // top-k: the k largest in magnitude, in increasing index order.
  const size_t k = std::clamp<size_t>(
    static_cast<size_t>(std::llround(c.fraction * static_cast<double>(n))), 1, std::max<size_t>(n, 1));
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  if (k < n)
    std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
                     [&](uint32_t a, uint32_t b) { return std::abs(want[a]) > std::abs(want[b]); });
  order.resize(std::min(k, n));
  std::sort(order.begin(), order.end());
  u.bytes.resize(order.size() * sizeof(float));
  u.indices.resize(order.size() * sizeof(uint32_t));
  u.squares.clear();
  if (squares)
    u.squares.resize(order.size() * sizeof(float));
  residual = want; // everything not sent stays for later
  for (size_t j = 0; j < order.size(); ++j) {
    const uint32_t i = order[j];
    std::memcpy(u.bytes.data() + j * sizeof(float), &want[i], sizeof(float));
    std::memcpy(u.indices.data() + j * sizeof(uint32_t), &i, sizeof(uint32_t));
    if (squares)
      std::memcpy(u.squares.data() + j * sizeof(float), &squares[i], sizeof(float));
    residual[i] = 0.0f;
  }
}

std::string decode_update(param_update& u) {
  const auto enc = static_cast<update_encoding>(u.encoding);
  const auto n = static_cast<size_t>(u.count);
  if (enc == update_encoding::raw)
    return u.indices.empty() ? "" : "indices with raw values";
  if (enc == update_encoding::fp16 || enc == update_encoding::bf16) {
    if (u.bytes.size() != n * 2 || (!u.squares.empty() && u.squares.size() != n * 2)
        || !u.indices.empty())
      return std::to_string(u.bytes.size()) + " bytes of 16-bit values for " + std::to_string(n)
        + " values";
    const bool half = enc == update_encoding::fp16;
    auto widen = [&](const std::vector<char>& in) {
      std::vector<char> out(n * sizeof(float));
      for (size_t i = 0; i < n; ++i) {
        const uint16_t h = get_u16(in, 2 * i);
        const float v = half ? from_half(h) : from_bf16(h);
        std::memcpy(out.data() + i * sizeof(float), &v, sizeof v);
      }
      return out;
    };
    u.bytes = widen(u.bytes);
    if (!u.squares.empty())
      u.squares = widen(u.squares);
    u.encoding = 0;
    return "";
  }
  if (enc != update_encoding::topk)
    return "encoding " + std::to_string(u.encoding) + " (expected 0..3)";
  const size_t k = u.indices.size() / sizeof(uint32_t);
  if (u.indices.size() % sizeof(uint32_t) != 0 || k == 0 || k > n
      || u.bytes.size() != k * sizeof(float)
      || (!u.squares.empty() && u.squares.size() != k * sizeof(float)))
    return "a top-k update of " + std::to_string(u.bytes.size()) + " value bytes and "
      + std::to_string(u.indices.size()) + " index bytes for " + std::to_string(n) + " values";
  std::vector<char> dense(n * sizeof(float), 0), dense_sq;
  if (!u.squares.empty())
    dense_sq.assign(n * sizeof(float), 0);
  int64_t last = -1;
  for (size_t j = 0; j < k; ++j) {
    const uint32_t i = get_u32(u.indices, j * sizeof(uint32_t));
    if (i >= n || static_cast<int64_t>(i) <= last)
      return "top-k index " + std::to_string(i) + " out of range or not increasing";
    last = i;
    std::memcpy(dense.data() + i * sizeof(float), u.bytes.data() + j * sizeof(float), sizeof(float));
    if (!dense_sq.empty())
      std::memcpy(dense_sq.data() + i * sizeof(float), u.squares.data() + j * sizeof(float),
                  sizeof(float));
  }
  u.bytes = std::move(dense);
  u.squares = std::move(dense_sq);
  u.indices.clear();
  u.encoding = 0;
  return "";
}

} // namespace pnn
