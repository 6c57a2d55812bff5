#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

namespace torch::nn {
class Module;
}

namespace pnn::training {

/// HOGWILD (Niu, Recht, Ré, Wright 2011): makes `replica` train on `master`'s
/// parameter and buffer storage, so that an optimizer step of any replica updates
/// the shared values in place, without locks. Each replica keeps its own gradients
/// (and its optimizer its own state); BatchNorm running statistics are shared too,
/// as PyTorch's share_memory() shares every tensor of the module. Optimizers built on
/// the replica's parameters stay valid: they are the same tensors, now aliasing the
/// master's storage. Throws pnn::error unless both modules have the same parameter
/// and buffer names and shapes.
void share_parameters(const torch::nn::Module& master, torch::nn::Module& replica);

/// Rank `rank`'s shard of 0..n-1, like DistributedSampler: a seeded shuffle (the
/// same for every rank), then every `shards`-th index from position `rank`. Shards
/// are disjoint, cover 0..n-1 and differ in size by at most one.
std::vector<int64_t> shard_indices(int64_t n, int shards, int rank, uint64_t seed);

/// An epoch's batches handed out one at a time to several training jobs at once
/// (HOGWILD with dynamic shards). Every epoch has its own seeded shuffle of
/// `indices`, cut into batches; each next() takes the epoch's next batch, so a job
/// on a faster core takes more batches and all jobs finish an epoch together
/// (within one batch) instead of the slowest one's shard deciding the wall time.
/// The batches of an epoch are disjoint and cover `indices` exactly once.
/// Thread-safe.
class batch_queue {
public:
  /// `consumers`: how many jobs share the queue (sets each job's nominal batches
  /// per epoch, used for schedule lengths). Throws pnn::error on empty input.
  batch_queue(std::vector<int64_t> indices, int64_t batch_size, int consumers, uint64_t seed);

  /// Puts epoch `epoch`'s next batch into `out`; false when every batch of that
  /// epoch has been taken.
  bool next(int64_t epoch, std::vector<int64_t>& out);

  int64_t batches_per_epoch() const;
  int consumers() const;
  int64_t batch_size() const;
  /// Samples per epoch.
  int64_t size() const;

  /// Where the queue stands: batches taken so far of each epoch it still holds, and
  /// the first epoch it holds (earlier ones are over). A run stopped at a slice
  /// boundary saves it, so its resumed run takes every batch exactly once.
  struct position {
    std::map<int64_t, int64_t> taken; ///< epoch -> samples taken
    int64_t first_epoch = 0;
  };
  position where() const;
  /// Puts the queue where `p` says (a fresh queue of the same samples, batch size
  /// and seed); throws pnn::error(invalid_argument) naming what does not fit.
  void restore(const position& p);

private:
  std::vector<int64_t> order_of(int64_t epoch) const;
  struct epoch_state {
    std::vector<int64_t> order;
    size_t cursor = 0;
  };
  std::vector<int64_t> indices_;
  int64_t batch_size_;
  int consumers_;
  uint64_t seed_;
  mutable std::mutex mtx_;
  std::map<int64_t, epoch_state> epochs_;
  int64_t spent_below_ = 0; ///< epochs before this one are over and forgotten
};

} // namespace pnn::training
