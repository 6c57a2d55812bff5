#pragma once

#include <pnn/experiments/hogwild.hpp>
#include <pnn/actors/protocol.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pnn {

class ParameterHolder;

/// Distributed SGD through a parameter holder (Downpour-style; the reference's
/// `Hogwild` optimizer done right), on this host and/or on `pnn-node serve` hosts.
///
/// The holder lives on the coordinator and keeps the master parameters and a
/// version. Every worker (one per slot of every host) trains its own replica on
/// its own fixed shard of the training set (shard i of N, every epoch in its own
/// order), with its own optimizer and schedule:
/// - it pulls the holder's parameters before its first step (and waits for them)
///   and every `n_pull` steps without waiting: when the answer arrives (between
///   two slices) the worker moves to the holder's parameters plus the steps it made
///   since it asked, so no work is lost and no step waits for the network;
/// - it pushes the update it made since its last push or pull every `n_push` steps,
///   before every pull and at the end: a parameter delta, which the holder adds
///   divided by the number of workers (`merge` average; whole with sum), or, with
///   `optimizer_on` holder, its gradients, with which the holder takes the steps;
/// - at most `max_pushes` pushes are unanswered at a time (backpressure: the next
///   step waits), and a holder that does not answer within `holder_timeout`
///   seconds fails that worker.
/// Parameters travel as raw float32 bytes with a layout fingerprint, checked on
/// arrival: an update of the wrong layout or with NaN/Inf is rejected and counted
/// (summary.json: rejected_updates), never applied. BatchNorm running statistics
/// are not parameters: each worker keeps its own, and the final model's are
/// recomputed from (up to 10,240 samples of) the coordinator's training data.
struct sgd_options
  : data_group,
    optimizer_group,
    schedule_group, ///< seed: the holder's initial parameters; worker i's order from derive_seed(seed, i)
    cluster_group, ///< hosts: one worker per slot of each
    output_group,
    replica_group {
  int32_t n_push = 5;
  int32_t n_pull = 5;
  int32_t max_pushes = 2;
  double holder_timeout = 30; ///< seconds
  /// Where the optimizer runs: "workers" (each worker's own optimizer; the holder
  /// adds their parameter deltas) or "holder" (workers push gradients summed since
  /// their last push, the holder takes the optimizer steps with the run's schedule
  /// and keeps the moments; each worker's own optimizer moves its replica between
  /// pulls).
  std::string optimizer_on = "workers";
  /// With the optimizer on the workers, how the holder merges their deltas:
  /// "average" (adds each divided by the number of workers W, and the workers'
  /// learning rate is W x --lr: W local trajectories averaged, as local SGD with the
  /// learning rate scaled to the W-fold batch), or "sum" (adds each as it is; the
  /// only way before). Average measured better at every W and n tried (2 workers,
  /// LeNet5 on 20,000 Fashion-MNIST samples: 0.846 vs 0.811 at n = 5; 8 workers:
  /// 0.77 vs 0.23), hence the default.
  std::string merge = "average";
  /// Synchronous rounds (as synchronous data-parallel SGD): every worker pushes
  /// once per round (every n_push steps; it pulls after each push, so n_pull must
  /// be n_push) and waits; the holder applies the round's mean when all have
  /// pushed. The workers' learning rate is W x --lr (the W-fold batch's, Goyal et
  /// al. 2017), with the optimizer on the holder too. A worker that finishes or
  /// is lost leaves the rounds; with --hosts a worker waits for its round up to
  /// holder_timeout + peer_timeout (a silent host is lost after peer_timeout).
  /// bench_sgd_methods measures it against the asynchronous merges (README).
  bool sync = false;
  /// Post-local SGD (Lin et al. 2020): every worker pushes and pulls every step
  /// during its first `local_after` epochs (a fraction allowed), then every
  /// n_push / n_pull steps. 0: n_push / n_pull from the start. With --sync, 1
  /// epoch of 2 measured 0.853 instead of 0.846 for 4 workers at n = 5 (one job:
  /// 0.862; bench_sgd_methods, README).
  double local_after = 0;
  /// Divide each update by its staleness when > 1 (Zhang et al. 2016).
  bool staleness_scaling = false;
  /// A worker whose push was more than this many holder versions stale pulls and
  /// waits for the answer before its next step; 0: unbounded.
  int32_t max_staleness = 0;
  /// Save the holder's parameters to out/holder.pt every this many applied updates
  /// (and at the end); 0: never. A sharded holder saves each shard to
  /// out/holder.shard<i>.pt every this many updates it applied.
  int64_t holder_checkpoint_every = 0;
  /// The holder in this many shards (ParameterHolder; shard_bounds), each its own
  /// actor with its own version, optimizer state and checkpoint file; workers push
  /// and pull every shard at once.
  int32_t holder_shards = 1;
  /// Where the shards run: shard i on entry i mod H, "local" (this process) or
  /// "host:port" of a `pnn-node serve` (which runs no workers unless in `hosts`
  /// too); empty: every shard here. A remote shard sends its checkpoints here.
  std::vector<std::string> holder_hosts;
  /// Where this process's shards take pulls and pushes from workers on other
  /// hosts beside CAF's network layer (bulk_wire.hpp): "auto" (127.0.0.1 when every
  /// host is on loopback, else the address that reaches the first host), an
  /// address, or "off". Never with --sync or --tls.
  std::string bulk_bind = "auto";
  /// Pushes compressed: "none", "fp16", "bf16" (2 bytes a value) or "topk:F" (the
  /// fraction F of each slice's values largest in magnitude, with their indices);
  /// what compression leaves out is added to the worker's next push (error feedback).
  std::string compress = "none";
  /// Start from out/holder.pt when it exists (its version goes on counting); the
  /// workers' data order and schedules start afresh.
  bool resume = false;
  /// In-process only: called once the holder exists, before any worker starts (e.g.
  /// to publish it).
  std::function<void(ParameterHolder&)> on_holder;
};

/// One worker's share of an SGD run.
struct sgd_worker_report : hogwild_worker_report {
  std::string host; ///< "local" or the node's hostname:port
};

/// What an SGD run produced (also written under `out`); `model` carries the
/// holder's final parameters.
struct sgd_report : replica_report {
  std::vector<sgd_worker_report> workers;
  holder_status holder;
  std::vector<holder_status> holder_shards; ///< each shard's counters
  std::vector<uint64_t> holder_bounds;      ///< where each shard's values begin; the count
  std::vector<std::string> holder_places;   ///< where each shard ran ("local" or its host)
  /// Shards lost with their host and brought back on the coordinator (summary.json
  /// holder_restores): shard, lost_host, reason, version_seen, restored_version,
  /// versions_lost_at_least, at_seconds, restored.
  nlohmann::json holder_restores = nlohmann::json::array();
  uint64_t rejected_updates = 0; ///< pushes the holder refused (any sender)
  /// SIGINT/SIGTERM stopped the workers early (output_group::handle_interrupts): the
  /// holder's parameters so far are in holder.pt, and --resume goes on from them.
  bool interrupted = false;
};

/// Checks the options without loading data or connecting; throws pnn::error.
void validate(const sgd_options& options);

/// Runs distributed SGD: connects to `hosts`, starts the holder and the workers,
/// trains, copies the holder's parameters into the model and tests it. Writes
/// under `out`: summary.json (command, wall_seconds, cpu_utilization_mean,
/// test_accuracy, samples_per_second, rejected_updates, holder counters, every
/// worker's host, samples, pulls and pushes), summary.md, cpu.csv, loss.csv,
/// loss_worker<i>.csv, workers/worker<i>/ (steps.csv, epochs.csv, metrics.json),
/// model.pt, confusion.csv, test.json. A worker whose host dies or goes silent
/// (peer_timeout) mid-run is lost: the others go on (its pushes so far count), and
/// summary.json lists it under lost_workers. Throws pnn::error(invalid_argument) for
/// bad options or an unreachable host, pnn::error(run_failed) when a worker's job
/// failed or every worker was lost (after writing what there is).
sgd_report run_sgd(const sgd_options& options);

} // namespace pnn
