#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace pnn::training {

/// The generator behind every seeded choice pnn makes (shuffles, folds, augmentation).
using rng = std::mt19937_64;

/// Uniform integer in [0, n), unbiased and identical on every platform (unlike
/// std::uniform_int_distribution, whose algorithm the standard leaves open).
inline uint64_t uniform_below(rng& gen, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = gen();
  } while (x >= limit);
  return x % n;
}

/// Fisher-Yates shuffle driven by uniform_below.
template <class T>
void shuffle(std::vector<T>& v, rng& gen) {
  for (size_t i = v.size(); i > 1; --i)
    std::swap(v[i - 1], v[uniform_below(gen, i)]);
}

/// A seed derived from a base seed and a stream number (SplitMix64 mixing), so that
/// epoch e or fold f gets an independent, reproducible generator.
inline uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

} // namespace pnn::training
