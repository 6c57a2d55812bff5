#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace pnn::training {

/// A labelled image set held once in memory and shared read-only by every job in
/// the process. Folds and batches are index views into it, never copies.
struct dataset {
  std::string name;
  torch::Tensor images;             ///< uint8, N x C x H x W, contiguous
  torch::Tensor labels;             ///< int64, N
  std::vector<std::string> classes; ///< class names, index = label

  int64_t size() const {
    return labels.defined() ? labels.size(0) : 0;
  }
  int64_t channels() const {
    return images.size(1);
  }
  int64_t height() const {
    return images.size(2);
  }
  int64_t width() const {
    return images.size(3);
  }
  int64_t num_classes() const {
    return static_cast<int64_t>(classes.size());
  }
};

using dataset_ptr = std::shared_ptr<const dataset>;

/// A dataset's training and test parts.
struct dataset_pair {
  dataset_ptr train;
  dataset_ptr test;
};

/// Reads an MNIST-format idx pair (images idx3-ubyte, labels idx1-ubyte), raw or
/// gzip-compressed (detected from the content). Throws pnn::error naming the file and
/// what was wrong: missing, wrong magic, bad dimensions, truncated, count mismatch,
/// label out of range.
dataset load_idx(const std::filesystem::path& images_file, const std::filesystem::path& labels_file,
                 std::string name, std::vector<std::string> classes);

/// Reads an MNIST-layout folder: train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
/// t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz].
dataset_pair load_mnist_dir(const std::filesystem::path& dir, std::string name,
                            std::vector<std::string> classes);

/// Reads CIFAR-10 binary batches (each record: 1 label byte + 3072 pixel bytes) from
/// `dir`: data_batch_1..5.bin for training and test_batch.bin for testing; class names
/// from batches.meta.txt when present.
dataset_pair load_cifar10_dir(const std::filesystem::path& dir);

/// Reads CIFAR-10 binary batch files into one dataset.
dataset load_cifar10_files(const std::vector<std::filesystem::path>& files, std::string name,
                           std::vector<std::string> classes);

/// Shape and size of a generated dataset.
struct synthetic_options {
  int64_t train_size = 2000;
  int64_t test_size = 500;
  int64_t channels = 1;
  int64_t height = 28;
  int64_t width = 28;
  int64_t num_classes = 10;
  /// Pixel noise around each class's prototype (0..255); higher is harder.
  double noise = 60.0;
  uint64_t seed = 7;
};

/// A deterministic, learnable dataset: every class has a random prototype image and
/// each sample is its prototype plus uniform noise. The same options give the same bytes.
dataset_pair make_synthetic(const synthetic_options& options);

/// The first `n` samples of `d` as a view (no copy); `n` must be in 1..size.
dataset_ptr take_first(const dataset_ptr& d, int64_t n);

/// A dataset that pnn knows by name.
struct dataset_info {
  std::string name;
  std::string description;
  std::filesystem::path default_dir; ///< empty when the user must give --data-dir
  bool found = false;                ///< whether its files are where pnn would look
};

/// Every named dataset and whether its files are found (in `data_dir`, or the
/// default folder when `data_dir` is empty).
std::vector<dataset_info> list_datasets(const std::filesystem::path& data_dir = {});

/// Loads a dataset by name: "fashion-mnist" (default folder
/// /usr/share/datasets/fashion-mnist), "mnist" and "cifar10" (from `data_dir`),
/// "synthetic" (generated, 1x28x28, 10 classes). `subset` > 0 keeps the first
/// `subset` training samples. Throws pnn::error for unknown names or missing files.
dataset_pair load_dataset(const std::string& name, const std::filesystem::path& data_dir = {},
                          int64_t subset = 0);

/// load_dataset through a process-wide cache: every job in the process that asks for
/// the same (name, data_dir, subset) shares one copy, loaded by the first caller
/// (others asking meanwhile wait for it). Thread-safe. Under a cache limit
/// (set_dataset_cache_limit), datasets no job holds any more are dropped, least
/// recently asked first, to stay within it; one that alone is over the limit is an
/// error naming the limit (and is not kept).
dataset_pair shared_dataset(const std::string& name, const std::filesystem::path& data_dir = {},
                            int64_t subset = 0);

/// The bytes shared_dataset may keep (0: no limit, the default).
void set_dataset_cache_limit(int64_t bytes, std::string flag = "the dataset cache limit");

/// The bytes the cache holds now (for tests and logs).
int64_t dataset_cache_bytes();

/// The bytes a dataset's tensors take.
int64_t dataset_bytes(const dataset& d);

} // namespace pnn::training
