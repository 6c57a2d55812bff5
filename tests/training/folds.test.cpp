#define CAF_SUITE training.folds
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/folds.hpp>

#include <algorithm>
#include <set>

using namespace pnn;
using namespace pnn::training;

CAF_TEST(folds are disjoint and cover every sample with sizes within one) {
  for (int k : {2, 3, 5, 7}) {
    auto folds = kfold_split(23, k, 11);
    CAF_CHECK_EQUAL(folds.size(), static_cast<size_t>(k));
    std::set<int64_t> seen;
    size_t total = 0, smallest = 1000, largest = 0;
    for (const auto& f : folds) {
      seen.insert(f.begin(), f.end());
      total += f.size();
      smallest = std::min(smallest, f.size());
      largest = std::max(largest, f.size());
    }
    CAF_CHECK_EQUAL(total, 23u);
    CAF_CHECK_EQUAL(seen.size(), 23u); // no index twice
    CAF_CHECK_EQUAL(*seen.begin(), 0);
    CAF_CHECK_EQUAL(*seen.rbegin(), 22);
    CAF_CHECK_LESS_OR_EQUAL(largest - smallest, 1u);
  }
}

CAF_TEST(the split is a seeded shuffle) {
  auto a = kfold_split(100, 4, 1);
  auto b = kfold_split(100, 4, 1);
  auto c = kfold_split(100, 4, 2);
  CAF_CHECK(a == b);
  CAF_CHECK(a != c);
  // Shuffled: the first fold is not simply 0..24.
  auto sorted = a[0];
  std::sort(sorted.begin(), sorted.end());
  CAF_CHECK(sorted.back() != 24 || sorted.front() != 0);
}

CAF_TEST(a fold validates on its part and trains on the rest) {
  auto folds = kfold_split(10, 3, 5);
  auto f = make_fold(10, 3, 1, 5);
  CAF_CHECK(f.validation == folds[1]);
  CAF_CHECK_EQUAL(f.train.size(), 10u - folds[1].size());
  std::set<int64_t> all(f.train.begin(), f.train.end());
  all.insert(f.validation.begin(), f.validation.end());
  CAF_CHECK_EQUAL(all.size(), 10u);
}

CAF_TEST(a tiny split can be checked by hand) {
  // 4 samples, 2 folds: each fold holds 2, together {0,1,2,3}.
  auto folds = kfold_split(4, 2, 3);
  CAF_CHECK_EQUAL(folds[0].size(), 2u);
  CAF_CHECK_EQUAL(folds[1].size(), 2u);
  std::vector<int64_t> joined = folds[0];
  joined.insert(joined.end(), folds[1].begin(), folds[1].end());
  std::sort(joined.begin(), joined.end());
  CAF_CHECK(joined == (std::vector<int64_t>{0, 1, 2, 3}));
}

CAF_TEST(bad fold counts and indices are errors) {
  auto [code, msg] = test::error_of([] { kfold_split(10, 1, 0); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--folds 1"));
  auto [code2, msg2] = test::error_of([] { kfold_split(3, 4, 0); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  auto [code3, msg3] = test::error_of([] { make_fold(10, 2, 2, 0); });
  CAF_CHECK(code3 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg3, "fold index 2"));
}
