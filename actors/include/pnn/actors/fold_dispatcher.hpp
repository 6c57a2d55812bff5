#pragma once

// The fold dispatcher: runs one K-fold experiment. One queue of jobs, longest first,
// handed to free worker slots; watches workers (monitor) and re-queues the job of
// one that dies; when the queue is empty, gives the idle slots' cores to the jobs
// still running. Its interface is dispatcher_actor (protocol.hpp).

#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace pnn {

/// What a pruning policy has the dispatcher do with paused jobs.
struct pruning_decisions {
  std::vector<uint32_t> resume; ///< paused jobs that go on (to their next pause, or the end)
  std::vector<uint32_t> stop;   ///< paused jobs that end where they are (their result: ok)
};

/// Where a dispatcher's jobs pause and which go on (kfold --prune): the dispatcher
/// asks it for a job's pause epoch each time it hands the job out, tells it each
/// pause, and asks it again when nothing runs or waits in the queue but paused
/// jobs. A job stopped at a pause ends ok with fewer epochs than it was given.
/// Called by the dispatcher only, one call at a time.
class pruning_policy {
public:
  virtual ~pruning_policy() = default;
  /// The epoch after which `job` pauses next (job_spec::pause_at; 0: it runs to its
  /// end), `done` its epochs so far.
  virtual int64_t pause_at(const job_spec& job, int64_t done) = 0;
  /// `job` paused: `r` (ok) holds its epochs done and validation accuracy there.
  /// Decisions may name any paused job, this one or others.
  virtual pruning_decisions paused(const job_spec& job, const job_result& r) = 0;
  /// Nothing runs and the queue is empty; `paused` jobs wait: decide on at least one
  /// (the dispatcher stops every paused job a policy leaves waiting here).
  virtual pruning_decisions stalled(const std::vector<uint32_t>& paused) = 0;
};

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
  /// In-process only: the latest checkpoint of a job that is to resume on a worker
  /// of another host (which cannot read this host's folders), or nothing. The
  /// dispatcher reads no files itself.
  std::function<std::optional<job_checkpoint>(const job_spec&)> checkpoint_of;
  /// In-process only: pauses jobs at its rungs and decides which go on (null: every
  /// job runs to its end in one go). A paused job's slot takes the next job at once;
  /// jobs that go on are queued before those not started yet.
  std::shared_ptr<pruning_policy> pruning;
};

/// Spawns a dispatcher; `sink` (may be invalid) also receives each result.
dispatcher_actor spawn_dispatcher(caf::actor_system& sys, event_sink_actor sink,
                                  dispatcher_options options);

/// Jobs sorted longest first (by cost, then id): the order the dispatcher hands out.
std::vector<job_spec> longest_first(std::vector<job_spec> jobs);

/// Threads each of `running` jobs should get on `cores` cores: `base` each, and when
/// `tail` (queue empty) the cores spread evenly, earlier jobs taking the remainder.
std::vector<int32_t> thread_shares(int32_t running, int32_t cores, int32_t base, bool tail);

} // namespace pnn
