#pragma once

// The training worker: runs one job at a time (a fold of K-fold, a HOGWILD share or
// a distributed SGD share) in slices of a few batches, a message to itself after
// each, so it stays responsive to thread changes, cancel and shutdown. Its interface
// is worker_actor (protocol.hpp). At the end of a local job it has the job's records
// (steps.csv, epochs.csv, confusion.csv, metrics.json) written into job_spec::out_dir;
// a remote worker sends them back in the result instead.

#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <functional>
#include <memory>
#include <string>

namespace pnn::training {
struct job_options;
struct dataset;
class training_job;
} // namespace pnn::training

namespace pnn {

/// How a worker runs its jobs.
/// What a worker on a serve node takes from a coordinator (serve's flags): a job
/// beyond them fails with a message naming the flag, the host keeps serving.
struct peer_limits {
  int32_t max_threads = 0;          ///< a job's intra-op threads are capped here (0: no cap)
  int64_t max_checkpoint_bytes = 0; ///< a checkpoint sent with a job (0: no cap)
  /// Parameter holder shards run here for coordinators (sgd --holder-hosts): their
  /// values and optimizer moments, all shards together (0: no cap).
  int64_t max_holder_bytes = 0;
  /// When set, job_spec::data_dir must be "" or inside one of `data_dirs`
  /// (worker_options::data_dir, when set, replaces it and is always allowed).
  bool restrict_data_dirs = false;
  std::vector<std::string> data_dirs;
};

struct worker_options {
  int32_t slot = 0;           ///< reported in progress and results
  std::string host = "local"; ///< reported in results
  int64_t batches_per_slice = 4;
  double progress_interval = 0.5; ///< seconds between progress events
  /// A worker on another host than the coordinator: it writes nothing here (no
  /// records; checkpoints go to a private scratch folder and then home to the sink;
  /// job_spec::out_dir names the coordinator's folder) and returns the record files
  /// in job_result::files instead.
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
  /// Limits on what a coordinator asks (a serve node's workers).
  peer_limits limits;
};

/// The job options a spec describes (model, optimizer, schedule, sizes, seed,
/// threads, checkpoints into out_dir, the dataset's transforms). Throws pnn::error
/// for a bad optimizer or scheduler spec.
training::job_options job_options_from(const job_spec& spec);

/// Spawns a worker. `sink` (may be invalid) receives (progress_atom, job_progress)
/// every progress_interval and, from a remote worker, (checkpoint_atom,
/// job_checkpoint) after each checkpoint.
worker_actor spawn_worker(caf::actor_system& sys, event_sink_actor sink, worker_options options);

} // namespace pnn
