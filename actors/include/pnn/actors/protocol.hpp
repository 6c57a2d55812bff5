#pragma once

// Every atom and message type pnn's actors exchange. Message types are flat
// aggregates (ids, names, numbers, vectors of numbers) with inspect(), so they can
// cross the network once registered (register_message_types); none holds a tensor.

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace caf {
class actor_system_config;
}

namespace pnn {

// Atoms (CAF 0.17: at most 10 characters).
using run_atom = caf::atom_constant<caf::atom("run")>;           ///< start a job / an experiment
using slice_atom = caf::atom_constant<caf::atom("slice")>;       ///< a worker's next slice (to itself)
using threads_atom = caf::atom_constant<caf::atom("threads")>;   ///< set a job's intra-op threads
using progress_atom = caf::atom_constant<caf::atom("progress")>; ///< a job's progress event
using epoch_atom = caf::atom_constant<caf::atom("epoch")>;       ///< a job finished an epoch
using result_atom = caf::atom_constant<caf::atom("result")>;     ///< a job ended (ok or failed)
using add_atom = caf::atom_constant<caf::atom("add")>;           ///< add a worker to a dispatcher
using cpu_atom = caf::atom_constant<caf::atom("cpu")>;           ///< a CPU utilisation sample
using status_atom = caf::atom_constant<caf::atom("status")>;     ///< ask for a snapshot
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;     ///< cancel a job
using sink_atom = caf::atom_constant<caf::atom("sink")>;         ///< attach a metric sink
using done_atom = caf::atom_constant<caf::atom("done")>;         ///< the experiment ended
using spawn_atom = caf::atom_constant<caf::atom("spawn")>;       ///< ask a node for its workers
using pull_atom = caf::atom_constant<caf::atom("pull")>;         ///< fetch the holder's parameters
using push_atom = caf::atom_constant<caf::atom("push")>;         ///< send an update to the holder
using checkpoint_atom = caf::atom_constant<caf::atom("checkpt")>; ///< a remote job's checkpoint

/// One job of a K-fold experiment: what to train on which fold. Data never travels
/// with a job: the host that runs it loads `dataset` once and shares it.
struct job_spec {
  uint32_t id = 0;
  std::string model;
  std::string scheduler; ///< schedule spec ("cosine", "warm:t_0=3")
  std::string optimizer = "adam";
  double lr = 1e-3;
  std::string dataset;
  std::string data_dir;
  int64_t subset = 0;
  int32_t folds = 2;
  int32_t fold = 0;
  uint64_t split_seed = 1; ///< seed of the K-fold shuffle (same for every job)
  uint64_t seed = 1;       ///< seed of initialisation, order and augmentation
  int64_t epochs = 1;
  int64_t batch_size = 32;
  int32_t threads = 1;     ///< intra-op threads at start
  int64_t checkpoint_every = 0;
  std::string out_dir;     ///< the job's folder ("" writes nothing)
  bool resume = false;     ///< continue from out_dir/latest.pt when it exists
  double cost = 0;         ///< estimated seconds at one thread (longest first)
  /// A job resumed on another host: the bytes of its latest checkpoint (the
  /// coordinator's out_dir/latest.pt), which that host cannot read itself.
  std::vector<char> checkpoint;
  /// SGD share instead of a K-fold fold: when > 0 the job trains on shard `shard`
  /// of `shards` of the whole training set (shard_indices with split_seed; all of
  /// it, in stored order, for 1) and has no validation set.
  int32_t shards = 0;
  int32_t shard = 0;
  /// Distributed SGD through a parameter holder (a run message that names one):
  /// pull the holder's parameters every `n_pull` steps (and before the first;
  /// later pulls are merged when they arrive, without stopping training),
  /// push the update accumulated since the last push every `n_push` steps, keep at
  /// most `max_pushes` pushes unanswered (the next step waits for an answer), and
  /// give up (the job fails) when the holder does not answer within
  /// `holder_timeout` seconds.
  int32_t n_pull = 5;
  int32_t n_push = 5;
  int32_t max_pushes = 2;
  double holder_timeout = 30;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_spec& x) {
  return f(caf::meta::type_name("job_spec"), x.id, x.model, x.scheduler, x.optimizer, x.lr,
           x.dataset, x.data_dir, x.subset, x.folds, x.fold, x.split_seed, x.seed, x.epochs,
           x.batch_size, x.threads, x.checkpoint_every, x.out_dir, x.resume, x.cost,
           x.checkpoint, x.shards, x.shard, x.n_pull, x.n_push, x.max_pushes, x.holder_timeout);
}

/// Where a running job is.
struct job_progress {
  uint32_t id = 0;
  int32_t slot = 0;
  int64_t epoch = 0;  ///< 1-based epoch in progress
  int64_t epochs = 0;
  int64_t batch = 0;  ///< batches done in this epoch
  int64_t batches = 0; ///< batches per epoch
  double loss = 0;    ///< mean loss of the batches since the last event
  double lr = 0;
  double elapsed = 0; ///< seconds since the job started
  int32_t threads = 1;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_progress& x) {
  return f(caf::meta::type_name("job_progress"), x.id, x.slot, x.epoch, x.epochs, x.batch,
           x.batches, x.loss, x.lr, x.elapsed, x.threads);
}

/// How a job ended.
struct job_result {
  uint32_t id = 0;
  std::string model;
  std::string scheduler;
  int32_t fold = 0;
  std::string host;
  int32_t slot = 0;
  bool ok = false;
  std::string error; ///< why it failed (empty when ok)
  double val_accuracy = 0;
  double val_loss = 0;
  double train_loss = 0;
  double started_at = 0;  ///< wall clock, seconds since the Unix epoch
  double finished_at = 0;
  int64_t epochs_done = 0;
  int64_t resumed_from_epoch = 0; ///< epochs restored from a checkpoint (0: fresh start)
  std::vector<double> thread_times; ///< when the thread count changed (wall clock)
  std::vector<int32_t> thread_counts; ///< the count from that time on
  std::vector<double> epoch_val_accuracy;
  std::vector<double> epoch_train_loss;
  std::vector<double> epoch_val_loss;
  /// Record files of a job run on another host (which writes nothing itself): names
  /// (steps.csv, epochs.csv, metrics.json, confusion.csv) and contents, for the
  /// coordinator to write into the job's folder.
  std::vector<std::string> file_names;
  std::vector<std::string> file_contents;
  /// Distributed SGD: samples trained, pulls and pushes made, pushes the holder
  /// rejected (each one's update is lost; the job goes on).
  int64_t samples = 0;
  int64_t pulls = 0;
  int64_t pushes = 0;
  int64_t rejected_pushes = 0;
  /// Wall clock when the job's own clock (steps.csv's time) read 0.
  double clock_zero = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_result& x) {
  return f(caf::meta::type_name("job_result"), x.id, x.model, x.scheduler, x.fold, x.host,
           x.slot, x.ok, x.error, x.val_accuracy, x.val_loss, x.train_loss, x.started_at,
           x.finished_at, x.epochs_done, x.resumed_from_epoch, x.thread_times, x.thread_counts,
           x.epoch_val_accuracy, x.epoch_train_loss, x.epoch_val_loss, x.file_names,
           x.file_contents, x.samples, x.pulls, x.pushes, x.rejected_pushes, x.clock_zero);
}

/// A checkpoint of a job run on another host, for the coordinator's metric
/// collector to write into the job's folder (epoch_<epoch>.pt and latest.pt), so
/// that it outlives the host.
struct job_checkpoint {
  uint32_t id = 0;
  std::string out_dir; ///< the job's folder on the coordinator (job_spec::out_dir)
  int64_t epoch = 0;   ///< epochs done when it was taken
  std::vector<char> bytes; ///< the checkpoint file (training_job::save_checkpoint)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_checkpoint& x) {
  return f(caf::meta::type_name("job_checkpoint"), x.id, x.out_dir, x.epoch, x.bytes);
}

/// Parameters or an update as raw float32 bytes with a layout header: what travels
/// between a parameter holder and its workers. (CAF 0.17 serialises a
/// std::vector<float> element by element, ~25x slower, and garbles NaN/Inf; bytes
/// keep every value so that the receiver can check it.)
struct param_blob {
  uint64_t version = 0; ///< the holder's version these values are (pull) or build on (push)
  uint64_t layout = 0;  ///< training::layout_hash of the model
  uint64_t count = 0;   ///< number of float32 values
  std::vector<char> bytes; ///< count values, little-endian float32
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, param_blob& x) {
  return f(caf::meta::type_name("param_blob"), x.version, x.layout, x.count, x.bytes);
}

/// A parameter holder's counters.
struct holder_status {
  uint64_t version = 0;  ///< updates applied since the start
  uint64_t applied = 0;
  uint64_t rejected = 0; ///< wrong layout or size, or non-finite values
  uint64_t pulls = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, holder_status& x) {
  return f(caf::meta::type_name("holder_status"), x.version, x.applied, x.rejected, x.pulls);
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
