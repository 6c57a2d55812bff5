#include <pnn/training/folds.hpp>

#include <pnn/error.hpp>
#include <pnn/training/random.hpp>

#include <numeric>
#include <string>

namespace pnn::training {

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

std::vector<std::vector<int64_t>> kfold_split(int64_t n, int k, uint64_t seed) {
  if (k < 2 || k > n)
    throw pnn::error(error_code::invalid_argument,
                     "--folds " + std::to_string(k) + ": expected 2.." + std::to_string(n) + " for "
                       + std::to_string(n) + " samples");
  auto order = all_indices(n);
  rng gen{seed};
  shuffle(order, gen);
  std::vector<std::vector<int64_t>> folds(static_cast<size_t>(k));
  const int64_t base = n / k, extra = n % k;
  int64_t pos = 0;
  for (int64_t f = 0; f < k; ++f) {
    int64_t len = base + (f < extra ? 1 : 0);
    folds[static_cast<size_t>(f)].assign(order.begin() + pos, order.begin() + pos + len);
    pos += len;
  }
  return folds;
}

fold_indices make_fold(int64_t n, int k, int index, uint64_t seed) {
  if (index < 0 || index >= k)
    throw pnn::error(error_code::invalid_argument,
                     "fold index " + std::to_string(index) + ": expected 0.."
                       + std::to_string(k - 1));
  auto folds = kfold_split(n, k, seed);
  fold_indices result;
  for (int f = 0; f < k; ++f) {
    auto& src = folds[static_cast<size_t>(f)];
    auto& dst = f == index ? result.validation : result.train;
    dst.insert(dst.end(), src.begin(), src.end());
  }
  return result;
}

} // namespace pnn::training
