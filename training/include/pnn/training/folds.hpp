#pragma once

#include <cstdint>
#include <vector>

namespace pnn::training {

/// The sample indices of one K-fold split.
struct fold_indices {
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
};

/// Splits 0..n-1 into `k` folds after a seeded shuffle: folds are disjoint, cover
/// every index and differ in size by at most one. Throws pnn::error unless 2 <= k <= n.
std::vector<std::vector<int64_t>> kfold_split(int64_t n, int k, uint64_t seed);

/// Fold `index` of `k`: that fold validates, the others train (in shuffled order).
fold_indices make_fold(int64_t n, int k, int index, uint64_t seed);

/// 0..n-1 in order.
std::vector<int64_t> all_indices(int64_t n);

} // namespace pnn::training
