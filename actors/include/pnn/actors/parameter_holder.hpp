#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <functional>
#include <string>

namespace pnn {

// The parameter holder (holder_actor in protocol.hpp): the master parameters of a
// model trained by asynchronous SGD (Downpour-style, the reference's `Hogwild`
// optimizer done right). Workers pull the parameters and push accumulated updates
// (parameter deltas); the holder adds each accepted update and counts a version. An
// update of the wrong layout or size, or with a NaN/Inf, is rejected with an error
// (error_code::invalid_argument) and counted, never applied.

/// How often a holder saves its parameters (a checkpoint to restart from), and how.
struct holder_options {
  uint64_t checkpoint_every = 0; ///< applied updates between saves; 0: never
  /// In-process only: saves the parameters (in the holder's context; experiments/
  /// writes holder.pt, write_holder_file). An exception is said once; training goes on.
  std::function<void(const param_blob&)> save;
};

/// Spawns a holder starting from `initial` (its version is the starting version).
/// `initial` must be finite with count * 4 bytes; throws pnn::error otherwise.
holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options = {});

} // namespace pnn
