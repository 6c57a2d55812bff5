#include <torch/torch.h>

#define CAF_SUITE training.transforms
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/transforms.hpp>

using namespace pnn;
using namespace pnn::training;

namespace {

transform_options plain(int64_t size) {
  transform_options o;
  o.size = size;
  o.mean = {0.0};
  o.std = {1.0};
  return o;
}

} // namespace

CAF_TEST(normalisation scales to 0..1 then subtracts the mean and divides by std) {
  auto batch = torch::tensor({0, 51, 255}, torch::kUInt8).view({1, 1, 1, 3});
  transform_options o = plain(0);
  o.mean = {0.2};
  o.std = {0.5};
  auto x = apply_transform(batch, o, nullptr);
  CAF_CHECK(x.dtype() == torch::kFloat32);
  CAF_CHECK(std::abs(x[0][0][0][0].item<float>() - (-0.4f)) < 1e-6);
  CAF_CHECK(std::abs(x[0][0][0][1].item<float>() - 0.0f) < 1e-6);
  CAF_CHECK(std::abs(x[0][0][0][2].item<float>() - 1.6f) < 1e-6);
}

CAF_TEST(per - channel normalisation uses the mean and std of each channel) {
  auto batch = torch::full({1, 3, 1, 1}, 255, torch::kUInt8);
  transform_options o = plain(0);
  o.mean = {0.0, 0.5, 1.0};
  o.std = {1.0, 0.5, 2.0};
  auto x = apply_transform(batch, o, nullptr).flatten();
  CAF_CHECK(std::abs(x[0].item<float>() - 1.0f) < 1e-6);
  CAF_CHECK(std::abs(x[1].item<float>() - 1.0f) < 1e-6);
  CAF_CHECK(std::abs(x[2].item<float>() - 0.0f) < 1e-6);
  o.mean = {0.1, 0.2};
  o.std = {1.0, 1.0};
  auto [code, msg] = test::error_of([&] { apply_transform(batch, o, nullptr); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "2 means for 3 channels"));
}

CAF_TEST(resize brings 28x28 to 32x32 and keeps a constant image constant) {
  auto batch = torch::full({2, 1, 28, 28}, 102, torch::kUInt8);
  auto x = apply_transform(batch, plain(32), nullptr);
  CAF_CHECK_EQUAL(x.sizes().vec(), (std::vector<int64_t>{2, 1, 32, 32}));
  CAF_CHECK(torch::allclose(x, torch::full_like(x, 0.4f), 1e-6, 1e-6));
}

CAF_TEST(resize gives what LibTorch bilinear interpolation gives) {
  namespace F = torch::nn::functional;
  torch::manual_seed(1);
  for (auto [h, w] : {std::pair<int64_t, int64_t>{28, 28}, {20, 36}, {32, 32}, {7, 40}}) {
    auto batch = torch::randint(0, 256, {3, 2, h, w}, torch::kUInt8);
    auto x = apply_transform(batch, plain(32), nullptr);
    auto want = F::interpolate(batch.to(torch::kFloat32) / 255.0,
                               F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{32, 32})
                                 .mode(torch::kBilinear)
                                 .align_corners(false));
    CAF_CHECK(torch::allclose(x, want, 1e-5, 1e-5));
  }
}

CAF_TEST(padding centres the image and fills the border with zeros) {
  auto batch = torch::full({1, 1, 28, 28}, 255, torch::kUInt8);
  auto o = plain(32);
  o.fit_mode = transform_options::fit::pad;
  auto x = apply_transform(batch, o, nullptr);
  CAF_CHECK_EQUAL(x.sizes().vec(), (std::vector<int64_t>{1, 1, 32, 32}));
  CAF_CHECK_EQUAL(x.sum().item<float>(), 28.0f * 28.0f);
  CAF_CHECK_EQUAL(x[0][0][1][1].item<float>(), 0.0f);
  CAF_CHECK_EQUAL(x[0][0][2][2].item<float>(), 1.0f);
  CAF_CHECK_EQUAL(x[0][0][29][29].item<float>(), 1.0f);
  CAF_CHECK_EQUAL(x[0][0][30][30].item<float>(), 0.0f);
}

CAF_TEST(random crop shifts each image by at most the padding and is seeded) {
  // Image k holds values 0..15 in a 4x4 grid; a crop is a shifted window of it.
  auto img = torch::arange(16, torch::kUInt8).view({1, 1, 4, 4}).repeat({8, 1, 1, 1});
  auto o = plain(0);
  o.crop_padding = 1;
  rng g1{42}, g2{42}, g3{43};
  auto a = apply_transform(img, o, &g1);
  auto b = apply_transform(img, o, &g2);
  auto c = apply_transform(img, o, &g3);
  CAF_CHECK(torch::equal(a, b));
  CAF_CHECK(!torch::equal(a, c));
  auto padded = torch::constant_pad_nd(img.to(torch::kFloat32) / 255.0, {1, 1, 1, 1});
  bool all_windows = true, some_shifted = false;
  for (int64_t i = 0; i < 8; ++i) {
    bool found = false;
    for (int64_t dy = 0; dy <= 2 && !found; ++dy)
      for (int64_t dx = 0; dx <= 2 && !found; ++dx)
        if (torch::allclose(a[i], padded[i].narrow(1, dy, 4).narrow(2, dx, 4))) {
          found = true;
          some_shifted = some_shifted || dy != 1 || dx != 1;
        }
    all_windows = all_windows && found;
  }
  CAF_CHECK(all_windows);
  CAF_CHECK(some_shifted);
}

CAF_TEST(horizontal flip mirrors some images and leaves the others) {
  auto img = torch::tensor({1, 2, 3}, torch::kUInt8).view({1, 1, 1, 3}).repeat({16, 1, 1, 1});
  auto o = plain(0);
  o.horizontal_flip = true;
  rng gen{5};
  auto x = apply_transform(img, o, &gen) * 255.0;
  int flipped = 0, kept = 0;
  for (int64_t i = 0; i < 16; ++i) {
    auto first = std::lround(x[i][0][0][0].item<float>());
    auto last = std::lround(x[i][0][0][2].item<float>());
    flipped += first == 3 && last == 1;
    kept += first == 1 && last == 3;
  }
  CAF_CHECK_EQUAL(flipped + kept, 16);
  CAF_CHECK_GREATER(flipped, 0);
  CAF_CHECK_GREATER(kept, 0);
  // Without a generator (evaluation) nothing is augmented.
  auto y = apply_transform(img, o, nullptr) * 255.0;
  CAF_CHECK_EQUAL(std::lround(y[0][0][0][0].item<float>()), 1);
}

CAF_TEST(make_batch gathers the indexed samples in order) {
  auto images = torch::arange(5, torch::kUInt8).view({5, 1, 1, 1});
  std::vector<int64_t> idx{4, 0, 3, 1};
  auto x = make_batch(images, idx, 1, 3, plain(0), nullptr) * 255.0;
  CAF_CHECK_EQUAL(x.size(0), 2);
  CAF_CHECK_EQUAL(std::lround(x[0].item<float>()), 0);
  CAF_CHECK_EQUAL(std::lround(x[1].item<float>()), 3);
}
