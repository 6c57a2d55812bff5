#pragma once

// A parameter holder's checkpoint file (holder.pt): what `sgd --holder-checkpoint-every`
// (and an interrupted or finished sgd run) writes and `sgd --resume` reads.

#include <pnn/actors/protocol.hpp>

#include <filesystem>
#include <string>

namespace pnn {

/// A holder's checkpoint: its parameters and, when it runs the optimizer, the
/// optimizer's name and state (training::flat_optimizer::state).
struct holder_checkpoint {
  param_blob params;
  std::string optimizer;       ///< "" : the workers ran the optimizer
  std::string optimizer_state; ///< empty: none (yet)
};

/// The file form: "PNNHOLD2", version, layout, count (little-endian uint64), count
/// float32 values, then the optimizer's name and state, each a uint64 length and
/// its bytes. ("PNNHOLD1" files, without the last two, are still read.)
std::string holder_file_bytes(const holder_checkpoint& c);

/// Writes holder_file_bytes(c) to `file` atomically; throws pnn::error(io_error).
void write_holder_file(const std::filesystem::path& file, const holder_checkpoint& c);

/// Reads a holder file; throws pnn::error naming the file when it is missing,
/// truncated, not a holder file, or holds a non-finite value.
holder_checkpoint read_holder_file(const std::filesystem::path& file);

} // namespace pnn
