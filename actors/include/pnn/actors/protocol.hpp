#pragma once

// Every atom and message type pnn's actors exchange. Message types are flat
// aggregates (ids, names, numbers, vectors of numbers) with inspect(), so they can
// cross the network once registered (register_message_types); none holds a tensor.

#include <pnn/error.hpp>

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace caf {
class actor_system_config;
class deserializer;
} // namespace caf

namespace pnn {

/// A byte field of a message (a checkpoint file, parameters) as it crosses the
/// wire. Loading checks the length a peer claims against the bytes that came before
/// allocating: CAF 0.17 resizes a std::vector<char> to the claimed length first, so
/// 5 bytes from a peer could make the receiver allocate and zero 4 GiB.
struct wire_bytes {
  std::vector<char>& bytes;
};

/// Reads a byte sequence into `bytes`, never allocating more than the input holds.
caf::error load_wire_bytes(caf::deserializer& source, std::vector<char>& bytes);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_bytes& x) {
  if constexpr (Inspector::reads_state)
    return f(x.bytes);
  else
    return load_wire_bytes(f, x.bytes);
}

// Atoms (CAF 0.17: at most 10 characters). Atoms an actor sends only to itself
// (a worker's next slice, a dispatcher's wait, a collector's CPU timer) are private
// to that actor's source file.
using run_atom = caf::atom_constant<caf::atom("run")>;            ///< start a job / an experiment
using threads_atom = caf::atom_constant<caf::atom("threads")>;    ///< set a job's intra-op threads
using progress_atom = caf::atom_constant<caf::atom("progress")>;  ///< a job's progress event
using result_atom = caf::atom_constant<caf::atom("result")>;      ///< a job ended (ok or failed)
using add_atom = caf::atom_constant<caf::atom("add")>;            ///< add a worker to a dispatcher
using status_atom = caf::atom_constant<caf::atom("status")>;      ///< ask for a snapshot
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;      ///< cancel a job
using done_atom = caf::atom_constant<caf::atom("done")>;          ///< the experiment ended
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;        ///< ask a node for its workers
using pull_atom = caf::atom_constant<caf::atom("pull")>;          ///< fetch the holder's parameters
using push_atom = caf::atom_constant<caf::atom("push")>;          ///< send an update to the holder
using checkpoint_atom = caf::atom_constant<caf::atom("checkpt")>; ///< a job's checkpoint travels
using assign_atom = caf::atom_constant<caf::atom("assign")>;      ///< a job was given to a worker
using interrupt_atom = caf::atom_constant<caf::atom("interrupt")>; ///< save where you are and stop
using leave_atom = caf::atom_constant<caf::atom("leave")>;        ///< a worker left a synchronous run

/// What every job needs: what to train, on which part of which dataset, for how
/// long, and where its files go. Data never travels with a job: the host that runs
/// it loads `dataset` once and shares it. (A job of distributed SGD also gets an
/// sgd_link; a job resumed on another host a job_checkpoint.)
struct job_spec {
  uint32_t id = 0;
  std::string model;
  std::string scheduler; ///< schedule spec ("cosine", "warm:t_0=3")
  std::string optimizer = "adam";
  double lr = 1e-3;
  std::string dataset;
  std::string data_dir;
  int64_t subset = 0;
  /// K-fold: train on every fold but `fold` of `folds`, validate on `fold`.
  int32_t folds = 2;
  int32_t fold = 0;
  /// A shard instead of a fold (HOGWILD, SGD): when `shards` > 0 the job trains on
  /// shard `shard` of `shards` of the whole training set (shard_indices with
  /// split_seed; all of it, in stored order, for 1) and has no validation set.
  int32_t shards = 0;
  int32_t shard = 0;
  uint64_t split_seed = 1; ///< seed of the K-fold shuffle / shard split (same for every job)
  uint64_t seed = 1;       ///< seed of initialisation, order and augmentation
  int64_t epochs = 1;
  int64_t batch_size = 32;
  int32_t threads = 1; ///< intra-op threads at start
  int64_t checkpoint_every = 0;
  /// Validate after every this many epochs and after the last (0: the last only).
  int64_t validate_every = 1;
  std::string out_dir; ///< the job's folder ("" writes nothing)
  bool resume = false; ///< continue from out_dir/latest.pt when it exists
  double cost = 0;     ///< estimated seconds at one thread (longest first)
  /// Pause after this epoch (0: run to the end; else fewer than `epochs`): the job
  /// validates it, saves latest.pt (home, from another host) and answers ok with
  /// epochs_done == pause_at, its schedule still that of `epochs` epochs, so that
  /// the same job resumed from there (a later pause_at, or 0) goes on as if it had
  /// never stopped. A pruning dispatcher's rungs (kfold --prune). Not a setting
  /// (job_settings): a checkpoint from any pause continues the job.
  int64_t pause_at = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_spec& x) {
  return f(caf::meta::type_name("job_spec"), x.id, x.model, x.scheduler, x.optimizer, x.lr,
           x.dataset, x.data_dir, x.subset, x.folds, x.fold, x.shards, x.shard, x.split_seed,
           x.seed, x.epochs, x.batch_size, x.threads, x.checkpoint_every, x.validate_every,
           x.out_dir, x.resume, x.cost, x.pause_at);
}

/// What job `j` trains, as "key=value;..." (model, scheduler, optimizer, lr,
/// dataset, subset, folds, fold, shards, shard, split_seed, seed, epochs,
/// batch_size, and validate_every when not 1): what a checkpoint or a kept
/// result.json must have been made with
/// to count for the job (training::settings_difference says how two differ).
std::string job_settings(const job_spec& j);

/// Where a running job is.
struct job_progress {
  uint32_t id = 0;
  int32_t slot = 0;
  int64_t epoch = 0; ///< 1-based epoch in progress
  int64_t epochs = 0;
  int64_t batch = 0;   ///< batches done in this epoch
  int64_t batches = 0; ///< batches per epoch
  double loss = 0;     ///< mean loss of the batches since the last event
  double lr = 0;
  double elapsed = 0; ///< seconds since the job started
  int32_t threads = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_progress& x) {
  return f(caf::meta::type_name("job_progress"), x.id, x.slot, x.epoch, x.epochs, x.batch,
           x.batches, x.loss, x.lr, x.elapsed, x.threads);
}

/// Distributed SGD: what a worker did with its parameter holder.
struct sgd_counters {
  int64_t pulls = 0;
  int64_t pushes = 0;
  int64_t rejected_pushes = 0; ///< pushes the holder refused (each one's update is lost)
  /// Staleness of the accepted pushes (holder updates from other workers applied
  /// since the parameters they were computed on): sum and maximum.
  uint64_t staleness_sum = 0;
  uint64_t staleness_max = 0;
  int64_t sync_pulls = 0; ///< pulls waited for because a push was over max_staleness
  int64_t accepted_pushes = 0; ///< pushes the holder answered as applied
  /// Pushes to a holder shard that was lost before it answered (its host went; the
  /// shard came back from its last checkpoint), and the shards this worker was
  /// moved to after such a loss.
  int64_t lost_pushes = 0;
  int64_t shard_moves = 0;
  int64_t pushed_bytes = 0; ///< update payload sent (values, squares, indices)
  /// Pulls and pushes (per shard) that went through a bulk port (bulk_wire.hpp)
  /// rather than CAF's network layer.
  int64_t bulk_requests = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sgd_counters& x) {
  return f(caf::meta::type_name("sgd_counters"), x.pulls, x.pushes, x.rejected_pushes,
           x.staleness_sum, x.staleness_max, x.sync_pulls, x.accepted_pushes, x.lost_pushes,
           x.shard_moves, x.pushed_bytes, x.bulk_requests);
}

/// Record files of a job run on another host (which writes nothing itself): names
/// (steps.csv, epochs.csv, metrics.json, confusion.csv) and contents, for the
/// coordinator to write into the job's folder.
struct record_files {
  std::vector<std::string> names;
  std::vector<std::string> contents;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, record_files& x) {
  return f(caf::meta::type_name("record_files"), x.names, x.contents);
}

/// How a job ended: `code` says whether and why it failed (error_code::none: it
/// finished; worker_lost, worker_busy, cancelled, holder_failed, run_failed, ...),
/// `error` says it in words.
struct job_result {
  uint32_t id = 0;
  std::string model;
  std::string scheduler;
  int32_t fold = 0;
  std::string host;
  int32_t slot = 0;
  error_code code = error_code::run_failed;
  std::string error; ///< why it failed (empty when ok)
  double val_accuracy = 0;
  double val_loss = 0;
  double train_loss = 0;
  double started_at = 0; ///< wall clock, seconds since the Unix epoch
  double finished_at = 0;
  int64_t epochs_done = 0;
  int64_t resumed_from_epoch = 0;     ///< epochs restored from a checkpoint (0: fresh start)
  int64_t resumed_from_step = 0;      ///< steps restored from a checkpoint (mid-epoch too)
  int64_t samples = 0;                ///< samples trained (all epochs)
  std::vector<double> thread_times;   ///< when the thread count changed (wall clock)
  std::vector<int32_t> thread_counts; ///< the count from that time on
  std::vector<double> epoch_val_accuracy;
  std::vector<double> epoch_train_loss;
  std::vector<double> epoch_val_loss;
  /// Wall clock when the job's own clock (steps.csv's time) read 0.
  double clock_zero = 0;
  record_files files; ///< a remote job's record files (empty for a local one)
  sgd_counters sgd;   ///< a distributed SGD job's pulls and pushes
  /// A job that paused (job_spec::pause_at) and went on: wall-clock start and end
  /// of each earlier part, in pairs (started_at/finished_at are the last part's).
  /// Set by the dispatcher.
  std::vector<double> segments;

  bool ok() const {
    return code == error_code::none;
  }
};

/// A failed result of job `id`.
inline job_result failed_job(uint32_t id, error_code code, std::string why) {
  job_result r;
  r.id = id;
  r.code = code == error_code::none ? error_code::run_failed : code;
  r.error = std::move(why);
  return r;
}

/// A failed result of `job`, named by the job's own identity (model, scheduler, fold).
inline job_result failed_job(const job_spec& job, error_code code, std::string why) {
  auto r = failed_job(job.id, code, std::move(why));
  r.model = job.model;
  r.scheduler = job.scheduler;
  r.fold = job.fold;
  return r;
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_result& x) {
  return f(caf::meta::type_name("job_result"), x.id, x.model, x.scheduler, x.fold, x.host, x.slot,
           x.code, x.error, x.val_accuracy, x.val_loss, x.train_loss, x.started_at, x.finished_at,
           x.epochs_done, x.resumed_from_epoch, x.resumed_from_step, x.samples, x.thread_times, x.thread_counts,
           x.epoch_val_accuracy, x.epoch_train_loss, x.epoch_val_loss, x.clock_zero, x.files,
           x.sgd, x.segments);
}

/// A checkpoint of a job run on another host, both ways: from the worker to the
/// coordinator's event sink, to be written into the job's folder (epoch_<epoch>.pt
/// and latest.pt) so that it outlives the host; and from the dispatcher to a worker
/// on another host, with the run message, to resume a job from it there.
struct job_checkpoint {
  uint32_t id = 0;
  std::string out_dir;     ///< the job's folder on the coordinator (job_spec::out_dir)
  int64_t epoch = 0;       ///< epochs done when it was taken
  /// Taken within epoch `epoch` + 1 (an interrupted job): it replaces latest.pt
  /// only, never epoch_<epoch>.pt, and is newer than that epoch's end.
  bool mid_epoch = false;
  std::vector<char> bytes; ///< the checkpoint file (training_job::save_checkpoint)
  /// The job's steps from record `steps_from` on, as in its steps file
  /// (training::encode_steps): from the worker, those not sent home before; to a
  /// worker, all of them (steps_from 0).
  int64_t steps_from = 0;
  std::string steps;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_checkpoint& x) {
  return f(caf::meta::type_name("job_checkpoint"), x.id, x.out_dir, x.epoch, x.mid_epoch,
           wire_bytes{x.bytes}, x.steps_from, x.steps);
}

/// Parameters or an update as raw float32 bytes with a layout header: what travels
/// between a parameter holder and its workers. (CAF 0.17 serialises a
/// std::vector<float> element by element, ~25x slower, and garbles NaN/Inf; bytes
/// keep every value so that the receiver can check it.)
struct param_blob {
  uint64_t version = 0;    ///< the holder's version these values are (pull) or build on (push)
  uint64_t layout = 0;     ///< training::layout_hash of the model
  uint64_t count = 0;      ///< number of float32 values
  std::vector<char> bytes; ///< count values, little-endian float32
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, param_blob& x) {
  return f(caf::meta::type_name("param_blob"), x.version, x.layout, x.count, wire_bytes{x.bytes});
}

/// Where a holder shard's bulk port is (bulk_wire.hpp: pulls and pushes beside
/// CAF's network layer) and the token that opens it for this run's workers.
/// port 0: none (pull and push through the shard's actor).
struct bulk_endpoint {
  std::string host;
  uint16_t port = 0;
  std::string token; ///< 32 hex digits
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, bulk_endpoint& x) {
  return f(caf::meta::type_name("bulk_endpoint"), x.host, x.port, x.token);
}

/// An update pushed to a parameter holder: a parameter delta to add (the workers
/// run the optimizer), or gradients summed over `steps` steps for the holder's own
/// optimizer. `seen` is the number of holder updates the sender's parameters
/// reflect (its last pull's version plus its own pushes since): the holder's
/// version minus `seen` when it applies the update is the update's staleness.
struct param_update {
  uint64_t seen = 0;
  uint64_t layout = 0;     ///< training::layout_hash of the model
  uint64_t count = 0;      ///< number of float32 values
  bool gradient = false;   ///< gradients (true) or a parameter delta
  int32_t steps = 1;       ///< steps the gradients were summed over
  double lr = 0;           ///< their mean learning rate (the run's schedule)
  std::vector<char> bytes; ///< count values, little-endian float32
  /// Gradients for an Adam holder over more than one step: the sum of their
  /// squares, as `bytes` (empty: the holder takes the mean's square).
  std::vector<char> squares;
  /// How `bytes` and `squares` travel (compression.hpp, update_encoding): 0 raw
  /// float32; 1 fp16 / 2 bf16, 2 bytes a value; 3 top-k, the values at `indices`
  /// (uint32, increasing) and zero elsewhere.
  uint8_t encoding = 0;
  std::vector<char> indices;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, param_update& x) {
  return f(caf::meta::type_name("param_update"), x.seen, x.layout, x.count, x.gradient, x.steps,
           x.lr, wire_bytes{x.bytes}, wire_bytes{x.squares}, x.encoding, wire_bytes{x.indices});
}

/// A holder's answer to an applied update: its new version and the update's staleness.
struct push_ack {
  uint64_t version = 0;
  uint64_t staleness = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, push_ack& x) {
  return f(caf::meta::type_name("push_ack"), x.version, x.staleness);
}

/// A parameter holder's counters.
struct holder_status {
  uint64_t version = 0; ///< updates applied since the start
  uint64_t applied = 0;
  uint64_t rejected = 0; ///< wrong layout or size, or non-finite values
  uint64_t pulls = 0;
  uint64_t rounds = 0; ///< synchronous rounds completed (each one version)
  /// Bulk port pushes whose sum, made as they arrived, became the version (the
  /// others among `applied` were added under the holder's lock).
  uint64_t streamed = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, holder_status& x) {
  return f(caf::meta::type_name("holder_status"), x.version, x.applied, x.rejected, x.pulls,
           x.rounds, x.streamed);
}

/// What a node (one per host, `pnn-node serve`) offers.
struct node_info {
  std::string host;  ///< how results name it: hostname:port
  int32_t slots = 0; ///< workers it runs at once
  int32_t cores = 0;
  std::vector<std::string> datasets; ///< datasets whose files it has
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.host, x.slots, x.cores, x.datasets);
}

// ---------------------------------------------------------------------------
// The actors' interfaces: each signature is a message the actor understands, so a
// wrong message to a typed handle does not compile. Every handle may cross the
// network (CAF serialises typed handles as proxies).

/// A parameter holder (parameter_holder.hpp): the master parameters of a model
/// trained by asynchronous SGD. An update of the wrong layout or size, or with a
/// NaN/Inf, is rejected with a pnn error and counted, never applied.
using holder_actor = caf::typed_actor<
  /// The current parameters and version.
  caf::replies_to<pull_atom>::with<param_blob>,
  /// Adds `update` (a delta with the holder's layout, built on version
  /// `update.version`); answers the new version. A holder that runs the optimizer
  /// refuses deltas.
  caf::replies_to<push_atom, param_blob>::with<uint64_t>,
  /// Applies `update` (a delta, or gradients for a holder that runs the optimizer);
  /// answers the new version and the update's staleness. A synchronous holder
  /// answers once every member pushed its update of the round and the round's mean
  /// was applied.
  caf::replies_to<push_atom, param_update>::with<push_ack>,
  /// Worker `who`, a member of a synchronous holder's rounds, left (finished or
  /// lost): rounds wait for one push fewer (its push in the round being gathered
  /// stays in it). An asynchronous holder ignores it.
  caf::reacts_to<leave_atom, caf::actor_addr>,
  /// The current parameters and the optimizer's state (empty without an optimizer
  /// on the holder or before its first step): what a checkpoint keeps.
  caf::replies_to<checkpoint_atom>::with<param_blob, std::string>,
  /// Counters.
  caf::replies_to<status_atom>::with<holder_status>>;

/// Where a worker of an asynchronous run asks for a holder shard that failed it
/// (its host was lost, or it did not answer in time): (pull_atom, shard, the handle
/// that failed) is answered with the shard's current handle, once it has one other
/// than that (a lost shard comes back from its last checkpoint).
using holder_directory_actor =
  caf::typed_actor<caf::replies_to<pull_atom, uint32_t, holder_actor>::with<holder_actor>>;

/// The link of a distributed SGD job to its parameter holder: pull the holder's
/// parameters before the first step (which waits for them) and every `n_pull` steps
/// (merged when the answer arrives, keeping the steps made meanwhile), push the
/// update accumulated since the last push every `n_push` steps, before each pull
/// and at the end, keep at most `max_pushes` pushes unanswered (the next step
/// waits), and fail the job (holder_failed) when the holder does not answer within
/// `holder_timeout` seconds. With `gradients` the worker pushes its gradients
/// summed since the last push (the holder runs the optimizer; the worker's own
/// optimizer keeps its replica moving between pulls), else parameter deltas. With
/// `max_staleness` > 0, a push answered with a staleness above it makes the worker
/// pull and wait for the answer before its next step. With `sync`, every push ends
/// a round: the worker waits for its answer (given when every worker pushed), then
/// pulls and waits before its next step (n_pull is n_push). With `local_after` > 0
/// the worker pushes and pulls every step during its first `local_after` epochs
/// (its own data's), and every n_push / n_pull steps after (post-local SGD).
///
/// A sharded holder (`shards` not empty) is S holder actors, shard i holding values
/// [bounds[i], bounds[i+1]) of the flat parameters (bounds: S + 1 offsets from 0 to
/// the count, increasing; `holder` is shards[0]). The worker pulls from and pushes
/// to every shard at once, each slice with the shard's own layout (shard_layout)
/// and version; a pull ends when every shard answered, a push when every shard
/// answered it (refused when one refused it; its staleness the largest). With a
/// `directory` (asynchronous runs), a shard that fails a request is replaced by the
/// one the directory names, and the worker pulls it before it goes on; a push to a
/// lost shard is counted lost.
struct sgd_link {
  holder_actor holder;
  int32_t n_pull = 5;
  int32_t n_push = 5;
  int32_t max_pushes = 2;
  double holder_timeout = 30;
  bool gradients = false;
  int32_t max_staleness = 0; ///< 0: unbounded
  bool sync = false;
  std::vector<holder_actor> shards; ///< empty: `holder` holds every value
  std::vector<uint64_t> bounds;     ///< shards.size() + 1 offsets (in values)
  /// Asynchronous runs: where to ask for a shard that failed (none: the job fails).
  holder_directory_actor directory;
  /// Pushes compressed (update_encoding; top-k: this fraction of each slice's
  /// values), with error feedback.
  uint8_t encoding = 0;
  double topk_fraction = 1.0;
  /// Per shard (or one for `holder`): its bulk port (bulk_wire.hpp), where the
  /// worker pulls and pushes when it can connect to it (else, and for a shard that
  /// moved, through the actor). Empty or port 0: the actor.
  std::vector<bulk_endpoint> bulk;
  double local_after = 0; ///< epochs of every-step pushes and pulls first
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sgd_link& x) {
  return f(caf::meta::type_name("sgd_link"), x.holder, x.n_pull, x.n_push, x.max_pushes,
           x.holder_timeout, x.gradients, x.max_staleness, x.sync, x.shards, x.bounds, x.directory,
           x.encoding, x.topk_fraction, x.bulk, x.local_after);
}

/// The layout fingerprint of shard [begin, end) of parameters of layout `layout`:
/// a slice pushed to the wrong shard is refused, not added to other values.
uint64_t shard_layout(uint64_t layout, uint64_t begin, uint64_t end);

/// A holder shard a coordinator asks a node to run (sgd --holder-hosts): its
/// starting values and how it runs (holder_options_from turns it into
/// holder_options; a bad optimizer spec is refused). Its checkpoints go to the
/// coordinator's holder_home_actor every `checkpoint_every` applied updates.
struct holder_spec {
  uint32_t shard = 0;            ///< which shard: its checkpoints say so
  param_blob initial;            ///< its values, version and (shard) layout
  std::string optimizer;         ///< "" : updates are deltas; else an optimizer spec
  double lr = 1e-3;              ///< the optimizer's base learning rate
  std::string optimizer_state;   ///< flat_optimizer::state to start from ("" : fresh)
  uint64_t checkpoint_every = 0; ///< 0: never (the coordinator asks at the end)
  bool staleness_scaling = false;
  double delta_scale = 1.0;
  int32_t max_steps = 1024;
  uint32_t sync_members = 0;
  /// Serve its pulls and pushes on the node's bulk port too, when it has one
  /// (the node answers where, with a token; port 0: it has none).
  bool bulk = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, holder_spec& x) {
  return f(caf::meta::type_name("holder_spec"), x.shard, x.initial, x.optimizer, x.lr,
           x.optimizer_state, x.checkpoint_every, x.staleness_scaling,
           x.delta_scale, x.max_steps, x.sync_members, x.bulk);
}

/// Where a holder shard on another host sends its checkpoints (the coordinator):
/// (checkpoint_atom, shard, its parameters, its optimizer's state).
using holder_home_actor =
  caf::typed_actor<caf::reacts_to<checkpoint_atom, uint32_t, param_blob, std::string>>;

/// A training worker (training_worker.hpp): runs one job at a time, in slices of a
/// few batches, so it stays responsive to thread changes, cancel and shutdown.
using worker_actor = caf::typed_actor<
  /// Run `job` to its end; the answer is its result (ok or failed, never an
  /// exception). A busy worker answers at once with code worker_busy.
  caf::replies_to<run_atom, job_spec>::with<job_result>,
  /// The same, resumed from `checkpoint` (a job moved here from another host: the
  /// coordinator's latest.pt of the job, which this host cannot read itself).
  caf::replies_to<run_atom, job_spec, job_checkpoint>::with<job_result>,
  /// Run `job` as one worker of distributed SGD through `link`'s holder; the job's
  /// own initialisation is replaced by the holder's parameters, which must have the
  /// model's layout. The result counts samples, pulls, pushes and rejected pushes.
  caf::replies_to<run_atom, job_spec, sgd_link>::with<job_result>,
  /// Use this many intra-op threads from the next slice on.
  caf::reacts_to<threads_atom, int32_t>,
  /// Drop the running job (its result: code cancelled).
  caf::reacts_to<cancel_atom>,
  /// The run was interrupted: save the running job where it is (mid-epoch, into
  /// its folder's latest.pt, or home through the sink from another host) and end it
  /// (its result: code interrupted). An SGD share just ends (its holder saves).
  caf::reacts_to<interrupt_atom>>;

/// Where workers and dispatchers send what happens: progress, results and the
/// checkpoints of jobs on other hosts. The metric collector implements it; a user's
/// actor in front of it (examples/custom_pipeline.cpp) implements it too.
///
/// Its handle travels to other hosts (their workers send progress and checkpoints
/// to it), so any peer may send it anything: the collector takes results and
/// assignments only from actors of its own process, and a job's progress and
/// checkpoints from another host only from the worker the job was assigned to.
using event_sink_actor = caf::typed_actor<
  /// A running job's progress (every worker_options::progress_interval).
  caf::reacts_to<progress_atom, job_progress>,
  /// A job ended (sent by whoever gave it out: a dispatcher, a run).
  caf::reacts_to<result_atom, job_result>,
  /// A checkpoint of a job on another host, for the job's folder here. Answered
  /// (a request) with nothing when stored, an error when refused or not stored: the
  /// worker then sends all its steps with the next one.
  caf::reacts_to<checkpoint_atom, job_checkpoint>,
  /// `job` was given to `worker` (sent before the job itself): the job's events
  /// from another host count only when they come from that worker, and its
  /// checkpoints only for the job's own folder (job_spec::out_dir).
  caf::reacts_to<assign_atom, job_spec, worker_actor>>;

/// A run's metric collector (metric_collector.hpp): an event sink that also
/// answers, when the run ended, the run's mean CPU utilisation (0..1).
using collector_actor = event_sink_actor::extend<caf::replies_to<done_atom>::with<double>>;

/// A fold dispatcher (fold_dispatcher.hpp): one K-fold experiment's queue.
using dispatcher_actor = caf::typed_actor<
  /// Adds a worker slot (monitored; a slot can join a running experiment).
  caf::reacts_to<add_atom, worker_actor>,
  /// Runs the jobs; replies with every job's result, by id, once all have ended.
  caf::replies_to<run_atom, std::vector<job_spec>>::with<std::vector<job_result>>,
  /// Cancels job `id` wherever it runs, or drops it from the queue (its result:
  /// code cancelled). Nothing happens for a job that already ended.
  caf::reacts_to<cancel_atom, uint32_t>,
  /// The run was interrupted: no job starts any more (queued ones end with code
  /// interrupted), running ones save where they are and end; the run's reply comes
  /// once every job has its result.
  caf::reacts_to<interrupt_atom>>;

/// A host's node (node.hpp), published on a port by `pnn-node serve`: the entry
/// point a coordinator reaches on a remote host.
using node_actor = caf::typed_actor<
  /// What this host offers: its name, slots, cores and datasets found.
  caf::replies_to<status_atom>::with<node_info>,
  /// Spawns one training worker per slot for the coordinator whose event sink is
  /// given (progress, results and checkpoints go there) and answers their handles.
  /// The workers run remote jobs: their record files come back in the results.
  /// They end when the sink's node goes away or the node shuts down.
  caf::replies_to<spawn_atom, event_sink_actor>::with<std::vector<worker_actor>>,
  /// Runs a parameter holder shard for the coordinator whose holder_home_actor is
  /// given (its checkpoints go there); it ends when that actor's node goes away or
  /// the node shuts down. Refused beyond serve's --max-holder-mb (every shard this
  /// node holds) or with settings a holder refuses.
  caf::replies_to<spawn_atom, holder_spec, holder_home_actor>::with<holder_actor, bulk_endpoint>>;

/// Registers every message type above (and vectors of them) with CAF, on every
/// node that exchanges them.
void register_message_types(caf::actor_system_config& cfg);

/// How pnn runs its actors: `threads` scheduler threads, one message per turn (a
/// worker's next slice queues behind the others' events), pnn's message types and
/// error category registered.
void configure_actor_system(caf::actor_system_config& cfg, size_t threads);

/// TLS with mutual authentication between the nodes of a cluster: this node's
/// certificate and private key (PEM) and the cluster's CA certificate. A peer must
/// present a certificate signed by that CA, or the connection is refused.
struct tls_files {
  std::string cert;
  std::string key;
  std::string ca;
  bool enabled() const {
    return !cert.empty() || !key.empty() || !ca.empty();
  }
};

/// Throws pnn::error(invalid_argument) naming the flag (--tls-cert, --tls-key,
/// --tls-ca) unless none or all three are given and each is a readable file.
void check_tls(const tls_files& tls);

/// Loads CAF's network layer (the middleman) for a process that talks to other
/// hosts: heartbeats every 250 ms (whatever `peer_timeout`: the peers' timeouts may
/// be shorter than ours), and a peer that sends nothing for `peer_timeout` seconds
/// (a cut cable, a stopped host: no clean close) is disconnected, which monitors of its actors see as down. With `tls` enabled
/// (check_tls first) it also loads CAF's OpenSSL module: every connection this
/// system makes or accepts through pnn::publish_actor / pnn::connect_actor is TLS
/// with mutual authentication.
void configure_network(caf::actor_system_config& cfg, double peer_timeout,
                       const tls_files& tls = {});

} // namespace pnn
