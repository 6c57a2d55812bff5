#include <pnn/training/hogwild.hpp>

#include <pnn/error.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/random.hpp>

#include <torch/torch.h>

namespace pnn::training {

namespace {

void share(const torch::OrderedDict<std::string, torch::Tensor>& from,
           torch::OrderedDict<std::string, torch::Tensor>& to, const char* what) {
  if (from.size() != to.size())
    throw pnn::error(error_code::invalid_argument,
                     std::string{"share_parameters: the models differ in their "} + what);
  for (auto& item : to) {
    const auto* source = from.find(item.key());
    if (source == nullptr || !source->sizes().equals(item.value().sizes()))
      throw pnn::error(error_code::invalid_argument,
                       "share_parameters: " + std::string{what} + " '" + item.key()
                         + "' differs between the models");
    item.value().set_data(*source);
  }
}

} // namespace

void share_parameters(const torch::nn::Module& master, torch::nn::Module& replica) {
  torch::NoGradGuard no_grad;
  auto to_params = replica.named_parameters();
  share(master.named_parameters(), to_params, "parameters");
  auto to_buffers = replica.named_buffers();
  share(master.named_buffers(), to_buffers, "buffers");
}

std::vector<int64_t> shard_indices(int64_t n, int shards, int rank, uint64_t seed) {
  if (shards < 1 || rank < 0 || rank >= shards || n < shards)
    throw pnn::error(error_code::invalid_argument,
                     "shard " + std::to_string(rank) + " of " + std::to_string(shards) + " for "
                       + std::to_string(n) + " samples: expected 0 <= rank < shards <= samples");
  auto order = all_indices(n);
  rng gen{seed};
  shuffle(order, gen);
  std::vector<int64_t> shard;
  for (int64_t i = rank; i < n; i += shards)
    shard.push_back(order[static_cast<size_t>(i)]);
  return shard;
}

batch_queue::batch_queue(std::vector<int64_t> indices, int64_t batch_size, int consumers,
                         uint64_t seed)
  : indices_(std::move(indices)), batch_size_(batch_size), consumers_(consumers), seed_(seed) {
  if (indices_.empty() || batch_size_ < 1 || consumers_ < 1)
    throw pnn::error(error_code::invalid_argument,
                     "batch queue: expected samples, a batch size and consumers of at least 1");
}

/// Epoch `epoch`'s seeded shuffle of the samples.
std::vector<int64_t> batch_queue::order_of(int64_t epoch) const {
  auto order = indices_;
  rng gen{derive_seed(seed_, 1000 + static_cast<uint64_t>(epoch))};
  shuffle(order, gen);
  return order;
}

bool batch_queue::next(int64_t epoch, std::vector<int64_t>& out) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (epoch < spent_below_)
    return false;
  auto i = epochs_.find(epoch);
  if (i == epochs_.end()) {
    epoch_state e;
    e.order = order_of(epoch);
    i = epochs_.emplace(epoch, std::move(e)).first;
    // Forget epochs two behind once every batch of them is taken (a job still
    // asking for one hears that it is over).
    while (epochs_.begin()->first < epoch - 1
           && epochs_.begin()->second.cursor >= epochs_.begin()->second.order.size()) {
      spent_below_ = epochs_.begin()->first + 1;
      epochs_.erase(epochs_.begin());
    }
  }
  auto& e = i->second;
  if (e.cursor >= e.order.size())
    return false;
  const size_t end = std::min(e.order.size(), e.cursor + static_cast<size_t>(batch_size_));
  out.assign(e.order.begin() + static_cast<std::ptrdiff_t>(e.cursor),
             e.order.begin() + static_cast<std::ptrdiff_t>(end));
  e.cursor = end;
  return true;
}

batch_queue::position batch_queue::where() const {
  std::lock_guard<std::mutex> guard{mtx_};
  position p;
  p.first_epoch = spent_below_;
  for (const auto& [epoch, e] : epochs_)
    p.taken[epoch] = static_cast<int64_t>(e.cursor);
  return p;
}

void batch_queue::restore(const position& p) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (p.first_epoch < 0)
    throw pnn::error(error_code::invalid_argument,
                     "batch queue: first epoch " + std::to_string(p.first_epoch) + " < 0");
  epochs_.clear();
  spent_below_ = p.first_epoch;
  for (const auto& [epoch, taken] : p.taken) {
    if (epoch < p.first_epoch || taken < 0 || taken > static_cast<int64_t>(indices_.size()))
      throw pnn::error(error_code::invalid_argument,
                       "batch queue: epoch " + std::to_string(epoch) + " with "
                         + std::to_string(taken) + " samples taken does not fit a queue of "
                         + std::to_string(indices_.size()) + " samples from epoch "
                         + std::to_string(p.first_epoch));
    epoch_state e;
    e.order = order_of(epoch);
    e.cursor = static_cast<size_t>(taken);
    epochs_.emplace(epoch, std::move(e));
  }
}

int64_t batch_queue::batches_per_epoch() const {
  return (static_cast<int64_t>(indices_.size()) + batch_size_ - 1) / batch_size_;
}
int batch_queue::consumers() const {
  return consumers_;
}
int64_t batch_queue::batch_size() const {
  return batch_size_;
}
int64_t batch_queue::size() const {
  return static_cast<int64_t>(indices_.size());
}

} // namespace pnn::training
