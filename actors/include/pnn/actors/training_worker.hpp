#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/typed_actor.hpp>

#include <functional>
#include <memory>
#include <string>

namespace pnn::training {
struct job_options;
struct dataset;
class training_job;
}

namespace pnn {

/// Runs one K-fold job at a time, in slices of a few batches (a message to itself
/// after each), so it stays responsive to thread changes, cancel and shutdown. At
/// the end it writes the job's records (steps.csv, epochs.csv, confusion.csv,
/// metrics.json) into job_spec::out_dir.
using worker_actor = caf::typed_actor<
  /// Run `job` to its end; the response is its result (ok or failed, never an
  /// exception). A busy worker answers at once with a failed result "worker busy".
  caf::replies_to<run_atom, job_spec>::with<job_result>,
  /// Run `job` as one worker of distributed SGD through the parameter holder
  /// `holder` (a holder_actor): pull before the first step (which waits for it)
  /// and every job_spec::n_pull steps (merged when the answer arrives, keeping the
  /// steps made meanwhile), push the accumulated update every job_spec::n_push
  /// steps, before each pull and at the end, at most job_spec::max_pushes
  /// unanswered. The job's own initialisation is replaced by the holder's
  /// parameters, which must have the model's layout. The result counts samples, pulls, pushes and rejected pushes.
  caf::replies_to<run_atom, job_spec, caf::actor>::with<job_result>,
  /// Train the next slice (sent by the worker to itself).
  caf::reacts_to<slice_atom>,
  /// Use this many intra-op threads from the next slice on.
  caf::reacts_to<threads_atom, int32_t>,
  /// Drop the running job (reported as failed with error "cancelled").
  caf::reacts_to<cancel_atom>>;

/// How a worker runs its jobs.
struct worker_options {
  int32_t slot = 0;           ///< reported in progress and results
  std::string host = "local"; ///< reported in results
  int64_t batches_per_slice = 4;
  double progress_interval = 0.5; ///< seconds between progress events
  /// A worker on another host than the coordinator: it writes nothing here (no
  /// records, no checkpoints; job_spec::out_dir names the coordinator's folder) and
  /// returns the record files in job_result::file_names / file_contents instead.
  bool remote = false;
  /// When set, datasets load from this folder instead of job_spec::data_dir (a
  /// node's own copy).
  std::string data_dir;
  /// In-process only: adjusts the job options built from a spec (criterion,
  /// optimizer factory) before the job starts.
  std::function<void(const job_spec&, training::job_options&)> customize;
  /// In-process only: train on this dataset instead of loading `job_spec::dataset`
  /// (the spec's name still picks the default transforms).
  std::shared_ptr<const training::dataset> train_data;
  /// In-process only: called once the job is built (and restored from a
  /// checkpoint), before its first batch; HOGWILD shares the parameters here.
  /// An exception fails the job with its message.
  std::function<void(const job_spec&, training::training_job&)> prepare;
};

/// The job options a spec describes (model, optimizer, schedule, sizes, seed,
/// threads, checkpoints into out_dir, the dataset's transforms). Throws pnn::error
/// for a bad optimizer or scheduler spec.
training::job_options job_options_from(const job_spec& spec);

/// The worker's state (its training job); opaque to callers.
struct worker_state {
  struct impl;
  std::unique_ptr<impl> d;
  worker_state();
  ~worker_state();
  static inline const char* name = "pnn.training_worker";
};

/// Behaviour of a worker: `sink` (may be invalid) receives (progress_atom,
/// job_progress) every progress_interval.
worker_actor::behavior_type training_worker(worker_actor::stateful_pointer<worker_state> self,
                                            caf::actor sink, worker_options options);

/// Spawns a worker.
worker_actor spawn_worker(caf::actor_system& sys, caf::actor sink, worker_options options);

} // namespace pnn
