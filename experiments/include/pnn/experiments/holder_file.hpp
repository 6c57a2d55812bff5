#pragma once

// A parameter holder's checkpoint file (holder.pt): what `sgd --holder-checkpoint-every`
// writes and `sgd --resume` reads.

#include <pnn/actors/protocol.hpp>

#include <filesystem>
#include <string>

namespace pnn {

/// The file form of a holder's parameters: "PNNHOLD1", version, layout, count
/// (little-endian uint64) and count float32 values.
std::string holder_file_bytes(const param_blob& params);

/// Writes holder_file_bytes(params) to `file` atomically; throws pnn::error(io_error).
void write_holder_file(const std::filesystem::path& file, const param_blob& params);

/// Reads a holder file; throws pnn::error naming the file when it is missing,
/// truncated, not a holder file, or holds a non-finite value.
param_blob read_holder_file(const std::filesystem::path& file);

} // namespace pnn
