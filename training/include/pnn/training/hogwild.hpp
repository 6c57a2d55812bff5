#pragma once

#include <cstdint>
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

} // namespace pnn::training
