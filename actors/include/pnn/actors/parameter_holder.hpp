#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/training/optimizers.hpp>

#include <caf/actor_system.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pnn {

// The parameter holder (holder_actor in protocol.hpp): the master parameters of a
// model trained by asynchronous SGD (Downpour-style, the reference's `Hogwild`
// optimizer done right). Workers pull the parameters and push updates; the holder
// applies each accepted update and counts a version. Two kinds of holder:
// - without an optimizer, updates are parameter deltas (each worker runs its own
//   optimizer) and the holder adds them;
// - with one (`holder_options::optimizer`, as Downpour SGD ran Adagrad on its
//   parameter servers), updates are gradients summed over a worker's steps and the
//   holder takes that many optimizer steps with their mean at the learning rate
//   the run's schedule gave them. Its moments are the run's, not one worker's.
// Every update says which version its parameters reflect; its staleness (versions
// applied since from other workers) is answered, and with `staleness_scaling` the
// step is divided by it (Zhang et al. 2016, staleness-aware async SGD). An update
// of the wrong kind, layout or size, or with a NaN/Inf, is rejected with an error
// (error_code::invalid_argument) and counted, never applied.
//
// A synchronous holder (`holder_options::sync_members` > 0) applies updates in
// rounds, as synchronous data-parallel SGD does: it answers no push until every
// member pushed one, then applies their mean once (deltas averaged; gradients
// averaged into one step per step taken, the large batch's) and answers them all
// with the one new version. A member that leaves (leave_atom: it finished, or its
// host went) makes the rounds wait for one push fewer.

/// How a holder runs: its optimizer, checkpoints, staleness scaling.
struct holder_options {
  uint64_t checkpoint_every = 0; ///< applied updates between saves; 0: never
  /// In-process only: saves the parameters and the optimizer's state (empty without
  /// an optimizer or before its first step), in the holder's context (experiments/
  /// writes holder.pt, write_holder_file). An exception is said once; training goes on.
  std::function<void(const param_blob& params, const std::string& optimizer_state)> save;
  /// The holder runs this optimizer: pushes are gradients (param_update::gradient).
  std::optional<training::optimizer_options> optimizer;
  /// The optimizer's state to start from (a checkpoint's; flat_optimizer::state).
  std::string optimizer_state;
  /// Divide each update (its learning rate, or a delta) by its staleness when > 1.
  bool staleness_scaling = false;
  /// Multiply each delta by this (e.g. 1/W: the holder moves by the workers' mean).
  double delta_scale = 1.0;
  /// Gradients of more steps than this in one push are refused (a worker sends at
  /// most n_push; each step is an optimizer pass in the holder's one actor).
  int32_t max_steps = 1024;
  /// Synchronous rounds of this many members (0: asynchronous, each update applied
  /// as it comes). delta_scale and staleness_scaling do not apply: a round applies
  /// the mean of its updates.
  uint32_t sync_members = 0;
};

/// Where each of `shards` shards of a model's flat parameters begins (S + 1 offsets,
/// from 0 to the total), for tensors of `tensor_values` values each in
/// parameter_bytes' order: the cut nearest each even share, moved to a tensor
/// boundary when one lies within a quarter of a share of it. Throws pnn::error
/// when shards is 0 or more than the values.
std::vector<uint64_t> shard_bounds(const std::vector<uint64_t>& tensor_values, size_t shards);

/// The options of a holder shard run for another host's coordinator (no save
/// function: the node sends its checkpoints home). Throws pnn::error
/// (invalid_argument) on an optimizer spec or learning rate that is not one.
holder_options holder_options_from(const holder_spec& spec);

/// Where shard `shard` on another host sends its checkpoints (holder_home_actor),
/// one home per shard so that a host can send only its own shards' checkpoints:
/// one of that shard, with `shape`'s layout and count and finite values, goes to
/// `save` (in the home's context); others are dropped and said on stderr.
holder_home_actor spawn_holder_home(
  caf::actor_system& sys, uint32_t shard, param_blob shape,
  std::function<void(uint32_t shard, const param_blob& params, const std::string& state)> save);

class bulk_server;
class bulk_shard;

/// Spawns a holder starting from `initial` (its version is the starting version).
/// `initial` must be finite with count * 4 bytes, and `optimizer_state` must fit
/// the optimizer; throws pnn::error otherwise. With `port` (an asynchronous holder
/// only) it also serves pulls and pushes there (bulk_wire.hpp) as long as it runs;
/// `endpoint` gets the port and the token (its host is the caller's to fill).
holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options = {},
                          const std::shared_ptr<bulk_server>& port = nullptr,
                          bulk_endpoint* endpoint = nullptr);

/// A holder's state as its bulk port serves it, without an actor (what spawn_holder
/// registers on its port; for tests and servers of one's own). The same checks
/// and exceptions as spawn_holder.
std::shared_ptr<bulk_shard> make_holder_shard(param_blob initial, holder_options options = {});

} // namespace pnn
