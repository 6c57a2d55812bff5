#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <filesystem>
#include <string>

namespace pnn {

// The parameter holder (holder_actor in protocol.hpp): the master parameters of a
// model trained by asynchronous SGD (Downpour-style, the reference's `Hogwild`
// optimizer done right). Workers pull the parameters and push accumulated updates
// (parameter deltas); the holder adds each accepted update and counts a version. An
// update of the wrong layout or size, or with a NaN/Inf, is rejected with an error
// (error_code::invalid_argument) and counted, never applied.

/// Where and how often a holder saves its parameters (a checkpoint to restart from).
struct holder_options {
  uint64_t checkpoint_every = 0;         ///< applied updates between saves; 0: never
  std::filesystem::path checkpoint_file; ///< written atomically (read_holder_file reads it)
};

/// Spawns a holder starting from `initial` (its version is the starting version).
/// `initial` must be finite with count * 4 bytes; throws pnn::error otherwise.
holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options = {});

/// The file form of a holder's parameters: "PNNHOLD1", version, layout, count
/// (little-endian uint64) and count float32 values.
std::string holder_file_bytes(const param_blob& params);

/// Writes holder_file_bytes(params) to `file` atomically; throws pnn::error(io_error).
void write_holder_file(const std::filesystem::path& file, const param_blob& params);

/// Reads a holder file; throws pnn::error naming the file when it is missing,
/// truncated, not a holder file, or holds a non-finite value.
param_blob read_holder_file(const std::filesystem::path& file);

} // namespace pnn
