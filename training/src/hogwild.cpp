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

} // namespace pnn::training
