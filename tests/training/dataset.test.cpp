#include <torch/torch.h>

#define CAF_SUITE training.dataset
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/system.hpp>
#include <pnn/training/dataset.hpp>

#include <zlib.h>

using namespace pnn;
using namespace pnn::training;
using bytes = std::vector<unsigned char>;

namespace {

void put_u32(bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8)
    b.push_back(static_cast<unsigned char>(v >> s));
}

/// An idx3 file of n images rows x cols whose pixel i of image k is k*10+i.
bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  bytes b{0, 0, 8, 3};
  put_u32(b, n);
  put_u32(b, rows);
  put_u32(b, cols);
  for (uint32_t k = 0; k < n; ++k)
    for (uint32_t i = 0; i < rows * cols; ++i)
      b.push_back(static_cast<unsigned char>(k * 10 + i));
  return b;
}

bytes idx_labels(const bytes& labels) {
  bytes b{0, 0, 8, 1};
  put_u32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_gz(const std::filesystem::path& file, const bytes& content) {
  gzFile f = gzopen(file.c_str(), "wb");
  gzwrite(f, content.data(), static_cast<unsigned>(content.size()));
  gzclose(f);
}

const std::vector<std::string> ten = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

struct fixture {
  test::temp_dir dir;
  std::filesystem::path images = dir / "images";
  std::filesystem::path labels = dir / "labels";

  std::pair<error_code, std::string> load_error() {
    return test::error_of([&] { load_idx(images, labels, "t", ten); });
  }
};

/// A CIFAR-10 record: label then 3072 pixels all equal to `fill`.
void add_record(bytes& b, unsigned char label, unsigned char fill) {
  b.push_back(label);
  b.insert(b.end(), 3072, fill);
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(dataset_tests, fixture)

CAF_TEST(a raw idx pair loads into uint8 NxCxHxW images and int64 labels) {
  test::write_bytes(images, idx_images(3, 2, 2));
  test::write_bytes(labels, idx_labels({4, 0, 9}));
  auto d = load_idx(images, labels, "tiny", ten);
  CAF_CHECK_EQUAL(d.size(), 3);
  CAF_CHECK_EQUAL(d.images.sizes().vec(), (std::vector<int64_t>{3, 1, 2, 2}));
  CAF_CHECK(d.images.dtype() == torch::kUInt8);
  CAF_CHECK(d.labels.dtype() == torch::kInt64);
  CAF_CHECK_EQUAL(d.images[2][0][1][1].item<int>(), 23);
  CAF_CHECK_EQUAL(d.images[0][0][0][1].item<int>(), 1);
  CAF_CHECK_EQUAL(d.labels[0].item<int64_t>(), 4);
  CAF_CHECK_EQUAL(d.labels[2].item<int64_t>(), 9);
  CAF_CHECK_EQUAL(d.num_classes(), 10);
}

CAF_TEST(gzip idx files load to the same content as raw ones) {
  test::write_bytes(images, idx_images(3, 2, 2));
  test::write_bytes(labels, idx_labels({4, 0, 9}));
  auto raw = load_idx(images, labels, "raw", ten);
  write_gz(dir / "images.gz", idx_images(3, 2, 2));
  write_gz(dir / "labels.gz", idx_labels({4, 0, 9}));
  auto gz = load_idx(dir / "images.gz", dir / "labels.gz", "gz", ten);
  CAF_CHECK(torch::equal(raw.images, gz.images));
  CAF_CHECK(torch::equal(raw.labels, gz.labels));
}

CAF_TEST(a missing file is an error naming it) {
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::file_not_found);
  CAF_CHECK(test::contains(msg, images.string()));
  CAF_CHECK(test::contains(msg, "not found"));
}

CAF_TEST(a wrong magic number is an error naming the file and the magic) {
  auto img = idx_images(1, 2, 2);
  img[3] = 1; // idx1 magic in an images file
  test::write_bytes(images, img);
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, images.string()));
  CAF_CHECK(test::contains(msg, "wrong magic number 0x00000801"));
}

CAF_TEST(a truncated image file is an error saying how much data is missing) {
  auto img = idx_images(3, 2, 2);
  img.resize(img.size() - 5);
  test::write_bytes(images, img);
  test::write_bytes(labels, idx_labels({1, 2, 3}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, images.string()));
  CAF_CHECK(test::contains(msg, "truncated: header promises 12 data bytes, file has 7"));
}

CAF_TEST(a truncated header and an empty file are errors) {
  test::write_bytes(images, {0, 0, 8, 3, 0, 0});
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "truncated: header needs 16 bytes, file has 6"));
  test::write_bytes(images, {});
  auto [code2, msg2] = load_error();
  CAF_CHECK(code2 == error_code::malformed_file);
  CAF_CHECK(test::contains(msg2, "truncated"));
}

CAF_TEST(trailing bytes after the data are an error) {
  auto img = idx_images(1, 2, 2);
  img.push_back(7);
  test::write_bytes(images, img);
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "trailing data"));
}

CAF_TEST(a zero dimension is an error) {
  test::write_bytes(images, idx_images(0, 2, 2));
  test::write_bytes(labels, idx_labels({}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "dimension 0 is 0"));
}

CAF_TEST(dimensions promising more than 4 GiB are refused before allocating) {
  bytes img{0, 0, 8, 3};
  put_u32(img, 1u << 30);
  put_u32(img, 1u << 10);
  put_u32(img, 1u << 10);
  test::write_bytes(images, img);
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "more than 4 GiB"));
}

CAF_TEST(image and label counts must match) {
  test::write_bytes(images, idx_images(3, 2, 2));
  test::write_bytes(labels, idx_labels({1, 2}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, labels.string()));
  CAF_CHECK(test::contains(msg, "holds 2 labels but"));
  CAF_CHECK(test::contains(msg, "holds 3 images"));
}

CAF_TEST(a label outside the classes is an error) {
  test::write_bytes(images, idx_images(2, 2, 2));
  test::write_bytes(labels, idx_labels({1, 10}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "label 10 out of range, expected 0..9"));
}

CAF_TEST(a truncated gzip file is an error naming it) {
  write_gz(images, idx_images(50, 8, 8));
  auto content = test::read_text(images);
  content.resize(content.size() / 2);
  std::ofstream(images, std::ios::binary) << content;
  write_gz(labels, idx_labels(bytes(50, 1)));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, images.string()));
  CAF_CHECK(test::contains(msg, "truncated"));
}

CAF_TEST(a gzip header promising more than its file can inflate to is refused before reading) {
  // 60000 x 1000 x 1000 bytes (6e10, above the 4 GiB cap) would be refused anyway;
  // 1000 x 1000 x 1000 (1e9) is under the cap but a 40-byte gzip file inflates to at
  // most ~42 KB, so the loader must not allocate a gigabyte for it.
  auto header = idx_images(1, 1, 1);
  header.resize(16);
  for (int i : {4, 8, 12}) { // each dimension = 1000 = 0x03e8
    header[i] = 0;
    header[i + 1] = 0;
    header[i + 2] = 0x03;
    header[i + 3] = 0xe8;
  }
  write_gz(images, header);
  write_gz(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, images.string()));
  CAF_CHECK(test::contains(msg, "header promises 1000000000 data bytes, gzip data of this size"));
}

CAF_TEST(a folder where a file is expected is an error) {
  std::filesystem::create_directory(images);
  test::write_bytes(labels, idx_labels({1}));
  auto [code, msg] = load_error();
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "is a folder"));
}

CAF_TEST(an MNIST folder loads train and test parts and names a missing file) {
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_images(4, 3, 3));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_labels({0, 1, 2, 3}));
  test::write_bytes(dir / "t10k-images-idx3-ubyte", idx_images(2, 3, 3));
  auto [code, msg] = test::error_of([&] { load_mnist_dir(dir.path(), "m", ten); });
  CAF_CHECK(code == error_code::file_not_found);
  CAF_CHECK(test::contains(msg, "t10k-labels-idx1-ubyte"));
  test::write_bytes(dir / "t10k-labels-idx1-ubyte", idx_labels({5, 6}));
  auto pair = load_mnist_dir(dir.path(), "m", ten);
  CAF_CHECK_EQUAL(pair.train->size(), 4);
  CAF_CHECK_EQUAL(pair.test->size(), 2);
  CAF_CHECK_EQUAL(pair.test->labels[1].item<int64_t>(), 6);
  auto via_name = load_dataset("mnist", dir.path());
  CAF_CHECK(torch::equal(via_name.train->images, pair.train->images));
}

CAF_TEST(CIFAR - 10 batches load with labels and pixels in CHW order) {
  for (int i = 1; i <= 5; ++i) {
    bytes b;
    add_record(b, static_cast<unsigned char>(i), static_cast<unsigned char>(10 * i));
    add_record(b, 0, 1);
    test::write_bytes(dir / ("data_batch_" + std::to_string(i) + ".bin"), b);
  }
  bytes t;
  add_record(t, 9, 200);
  t[1 + 1024] = 77; // first pixel of the green plane
  test::write_bytes(dir / "test_batch.bin", t);
  auto pair = load_cifar10_dir(dir.path());
  CAF_CHECK_EQUAL(pair.train->size(), 10);
  CAF_CHECK_EQUAL(pair.train->images.sizes().vec(), (std::vector<int64_t>{10, 3, 32, 32}));
  CAF_CHECK_EQUAL(pair.train->labels[4].item<int64_t>(), 3);
  CAF_CHECK_EQUAL(pair.train->images[4][2][31][31].item<int>(), 30);
  CAF_CHECK_EQUAL(pair.test->labels[0].item<int64_t>(), 9);
  CAF_CHECK_EQUAL(pair.test->images[0][1][0][0].item<int>(), 77);
  CAF_CHECK_EQUAL(pair.test->images[0][0][0][0].item<int>(), 200);
  CAF_CHECK_EQUAL(pair.train->classes[0], "airplane");
}

CAF_TEST(malformed CIFAR - 10 files are errors naming the file) {
  bytes b;
  add_record(b, 1, 1);
  b.pop_back();
  test::write_bytes(dir / "bad.bin", b);
  auto [code, msg] = test::error_of([&] { load_cifar10_files({dir / "bad.bin"}, "c", ten); });
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "bad.bin"));
  CAF_CHECK(test::contains(msg, "3073-byte"));
  bytes c;
  add_record(c, 12, 1);
  test::write_bytes(dir / "label.bin", c);
  auto [code2, msg2] = test::error_of([&] { load_cifar10_files({dir / "label.bin"}, "c", ten); });
  CAF_CHECK(code2 == error_code::malformed_file);
  CAF_CHECK(test::contains(msg2, "label 12"));
  auto [code3, msg3] = test::error_of([&] { load_cifar10_dir(dir.path()); });
  CAF_CHECK(code3 == error_code::file_not_found);
  CAF_CHECK(test::contains(msg3, "data_batch_1.bin"));
  auto [code4, msg4] = test::error_of([&] { load_dataset("cifar10", dir / "nowhere"); });
  CAF_CHECK(code4 == error_code::file_not_found);
  CAF_CHECK(test::contains(msg4, "nowhere"));
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST(the synthetic generator is deterministic and its classes differ) {
  synthetic_options o;
  o.train_size = 50;
  o.test_size = 10;
  auto a = make_synthetic(o);
  auto b = make_synthetic(o);
  CAF_CHECK(torch::equal(a.train->images, b.train->images));
  CAF_CHECK(torch::equal(a.test->labels, b.test->labels));
  o.seed = 8;
  auto c = make_synthetic(o);
  CAF_CHECK(!torch::equal(a.train->images, c.train->images));
  // Samples of one class are closer to each other than to another class's.
  auto x = a.train->images.to(torch::kFloat32).flatten(1);
  auto y = a.train->labels;
  auto same = -1.0, other = -1.0;
  for (int64_t i = 1; i < 50 && (same < 0 || other < 0); ++i) {
    double dist = (x[0] - x[i]).abs().mean().item<double>();
    if (y[i].item<int64_t>() == y[0].item<int64_t>() && same < 0)
      same = dist;
    if (y[i].item<int64_t>() != y[0].item<int64_t>() && other < 0)
      other = dist;
  }
  CAF_CHECK_LESS(same, other);
}

CAF_TEST(a subset is a view of the first samples and not a copy) {
  auto pair = load_dataset("synthetic", {}, 100);
  CAF_CHECK_EQUAL(pair.train->size(), 100);
  auto full = load_dataset("synthetic");
  CAF_CHECK(torch::equal(pair.train->images, full.train->images.narrow(0, 0, 100)));
  auto view = take_first(full.train, 10);
  CAF_CHECK_EQUAL(view->images.data_ptr(), full.train->images.data_ptr());
  auto [code, msg] = test::error_of([&] { take_first(full.train, 5000); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--subset 5000"));
}

CAF_TEST(unknown dataset names and missing data folders are errors) {
  auto [code, msg] = test::error_of([] { load_dataset("imagenet"); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "fashion-mnist"));
  auto [code2, msg2] = test::error_of([] { load_dataset("mnist"); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "--data-dir"));
}

CAF_TEST(Fashion - MNIST from the Debian package loads with its class names) {
  bool found = false;
  for (const auto& info : list_datasets())
    if (info.name == "fashion-mnist")
      found = info.found;
  CAF_REQUIRE(found); // .ci/run installs dataset-fashion-mnist
  auto pair = load_dataset("fashion-mnist");
  CAF_CHECK_EQUAL(pair.train->size(), 60000);
  CAF_CHECK_EQUAL(pair.test->size(), 10000);
  CAF_CHECK_EQUAL(pair.train->images.sizes().vec(), (std::vector<int64_t>{60000, 1, 28, 28}));
  CAF_CHECK_EQUAL(pair.train->classes[9], "Ankle boot");
  // Balanced classes: 6,000 training images each.
  auto counts = torch::bincount(pair.train->labels);
  CAF_CHECK_EQUAL(counts.min().item<int64_t>(), 6000);
  CAF_CHECK_EQUAL(counts.max().item<int64_t>(), 6000);
}

CAF_TEST(the shared dataset cache drops unused datasets to stay within its limit) {
  // synthetic:train=1000,test=10 takes 1010 x 784 bytes of images + 8 per label.
  const int64_t one = dataset_bytes(*load_dataset("synthetic:train=1000,test=10").train)
    + dataset_bytes(*load_dataset("synthetic:train=1000,test=10").test);
  set_dataset_cache_limit(2 * one + one / 2, "--max-dataset-cache-mb");
  {
    auto held = shared_dataset("synthetic:train=1000,test=10,seed=1");
    for (int seed = 2; seed <= 6; ++seed)
      shared_dataset("synthetic:train=1000,test=10,seed=" + std::to_string(seed));
    // Within the limit all along; the one a job holds was never dropped.
    CAF_CHECK_LESS_OR_EQUAL(dataset_cache_bytes(), 2 * one + one / 2);
    auto again = shared_dataset("synthetic:train=1000,test=10,seed=1");
    CAF_CHECK(again.train.get() == held.train.get());
  }
  // One dataset alone over the limit is an error naming it, and is not kept.
  auto [code, msg] = test::error_of([] { shared_dataset("synthetic:train=5000,test=10"); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--max-dataset-cache-mb"));
  CAF_CHECK_LESS_OR_EQUAL(dataset_cache_bytes(), 2 * one + one / 2);
  // A generated set is refused by its size before it is made: 1,000,000 CIFAR-sized
  // samples would be 3 GB (a peer's dataset name is all it takes).
  const auto rss_before = pnn::peak_rss_bytes();
  std::tie(code, msg) =
    test::error_of([] { shared_dataset("synthetic-cifar:train=1000000,test=10"); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "would take"));
  CAF_CHECK(test::contains(msg, "--max-dataset-cache-mb"));
  CAF_CHECK_LESS(pnn::peak_rss_bytes() - rss_before, 64 << 20);
  set_dataset_cache_limit(0);
  // Counts that are no counts.
  for (const char* bad : {"synthetic:train=1e300", "synthetic:train=nan", "synthetic:train=-4",
                          "synthetic:noise=1e300", "synthetic:classes=0", "synthetic:seed=-1"}) {
    std::tie(code, msg) = test::error_of([bad] { load_dataset(bad); });
    CAF_CHECK(code == error_code::invalid_argument);
    CAF_CHECK(test::contains(msg, "expected"));
  }
}
