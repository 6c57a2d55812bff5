#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>

#include <caf/actor.hpp>
#include <caf/typed_actor.hpp>

#include <memory>
#include <vector>

namespace pnn {

/// The dispatcher's own reminder: "you have had no worker since wait number N".
using orphan_atom = caf::atom_constant<caf::atom("orphan")>;

/// Runs one K-fold experiment: one queue of jobs, longest first, handed to free
/// worker slots; watches workers (monitor) and re-queues the job of one that dies;
/// when the queue is empty, gives the idle slots' cores to the jobs still running.
using dispatcher_actor = caf::typed_actor<
  /// Adds a worker slot (monitored; a slot can join a running experiment).
  caf::reacts_to<add_atom, worker_actor>,
  /// Runs the jobs; replies with every job's result once all have ended.
  caf::replies_to<run_atom, std::vector<job_spec>>::with<std::vector<job_result>>,
  /// (Internal) the wait for a new worker ran out.
  caf::reacts_to<orphan_atom, uint64_t>>;

/// How a dispatcher places jobs and threads.
struct dispatcher_options {
  /// Cores of the host that the thread policy may hand out (sum of running jobs'
  /// threads never exceeds it).
  int32_t cores = 1;
  /// Threads per job while jobs wait in the queue.
  int32_t threads_per_job = 1;
  /// Raise running jobs' threads when the queue is empty and slots idle.
  bool raise_threads_in_tail = true;
  /// A job that fails this many times is reported failed (worker deaths count).
  int32_t max_attempts = 3;
  /// With no worker left (or none yet) while jobs remain: seconds to wait for one
  /// to join (add_atom) before the run fails with "every worker was lost". 0: fail
  /// at once. Used when hosts can (re)join a running experiment.
  double wait_for_workers = 0;
};

/// The dispatcher's state; opaque to callers.
struct dispatcher_state {
  struct impl;
  std::unique_ptr<impl> d;
  dispatcher_state();
  ~dispatcher_state();
  static inline const char* name = "pnn.fold_dispatcher";
};

/// Behaviour of a dispatcher: `sink` (may be invalid) also receives each result.
dispatcher_actor::behavior_type
fold_dispatcher(dispatcher_actor::stateful_pointer<dispatcher_state> self, caf::actor sink,
                dispatcher_options options);

/// Jobs sorted longest first (by cost, then id): the order the dispatcher hands out.
std::vector<job_spec> longest_first(std::vector<job_spec> jobs);

/// Threads each of `running` jobs should get on `cores` cores: `base` each, and when
/// `tail` (queue empty) the cores spread evenly, earlier jobs taking the remainder.
std::vector<int32_t> thread_shares(int32_t running, int32_t cores, int32_t base, bool tail);

} // namespace pnn
