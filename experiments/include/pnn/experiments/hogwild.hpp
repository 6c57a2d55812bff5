#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/experiments/options.hpp>
#include <pnn/training/records.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// (models::Network and training::dataset are declared by options.hpp.)

namespace pnn {

/// HOGWILD on one host (Niu, Recht, Ré, Wright 2011): one model trained by N worker
/// actors at once, each on its own shard of the training set, all updating the same
/// parameter storage without locks.
///
/// What is shared and what is not:
/// - parameters and buffers (BatchNorm running statistics included) are the master
///   model's tensors; every worker's replica aliases them, so an optimizer step of
///   any worker is seen by all at once;
/// - gradients, optimizer state (Adam's moments, momentum) and the learning-rate
///   schedule are per worker, like the reference's per-process optimizers;
/// - the data: every epoch the training set is seen exactly once by the N workers
///   together, each batch by one worker. With `balance` "dynamic" (the default)
///   the epoch's seeded shuffle is cut into batches that the workers take one at a
///   time from a shared queue, so a worker on a faster (or less busy) core takes
///   more of them and all finish together; with "static" worker i trains on fixed
///   shard i of N (every N-th sample of a seeded shuffle, like PyTorch's
///   DistributedSampler), in its own order every epoch, and the slowest worker
///   decides the wall time.
/// With one worker the whole training set is its shard and the run is plain SGD,
/// bit for bit what `pnn-node train` does with the same seed.
struct hogwild_options
  : data_group,
    optimizer_group,
    schedule_group, ///< seed: initialisation; worker i > 0's order from derive_seed(seed, i)
    output_group,
    replica_group {
  int32_t workers = 0;             ///< 0: one per core
  std::string balance = "dynamic"; ///< "dynamic" (shared batch queue) or "static" (fixed shards)
  /// Continue the run in `out` that SIGINT/SIGTERM stopped (handle_interrupts): the
  /// master from model.pt, each worker from its latest.pt, the shared queue from
  /// batch_queue.json. The settings must be the run's own (summary.json says them).
  bool resume = false;
};

/// One worker's share of a HOGWILD run.
struct hogwild_worker_report {
  job_result result;                        ///< as the worker reported it (times: wall clock)
  std::vector<training::step_record> steps; ///< time: seconds since the run's training began
  int64_t samples = 0;                      ///< samples this worker trained (all epochs)
};

/// What a run of one model trained by many workers produced (hogwild, sgd).
struct replica_report {
  std::shared_ptr<models::Network> model; ///< the trained model (HOGWILD's master, the holder's)
  double wall_seconds = 0;                ///< the whole run: load, training, test
  double train_seconds = 0;               ///< first worker's first batch to the last worker's end
  double train_started_at = 0; ///< wall clock when the workers' step times read 0
  double samples_per_second = 0;          ///< samples trained by all workers / train_seconds
  double cpu_utilization_mean = 0;
  double user_cpu_seconds = 0;
  double system_cpu_seconds = 0;
  long long peak_rss_bytes = 0;
  double final_train_loss = 0; ///< last epoch's training loss, averaged over the workers' samples
  double test_accuracy = 0;    ///< NaN when not tested
  double test_loss = 0;
  std::vector<std::vector<int64_t>> confusion; ///< of the test set
  nlohmann::json summary;                      ///< the content of summary.json
};

/// What a HOGWILD run produced (also written under `out`).
struct hogwild_report : replica_report {
  std::vector<hogwild_worker_report> workers;
  /// SIGINT/SIGTERM stopped the workers early (output_group::handle_interrupts):
  /// each saved where it was, the master is in model.pt, and --resume goes on.
  bool interrupted = false;
};

/// Checks the options (names, numbers) without loading data; throws pnn::error.
void validate(const hogwild_options& options);

/// Runs HOGWILD with its own actor system: N training workers (one shard each, all
/// on the master's parameters) and a metric collector. Writes under `out`:
/// summary.json, summary.md, cpu.csv, loss.csv (every step of every worker against
/// time since training began, with a moving average), loss_worker<i>.csv,
/// workers/worker<i>/ (steps.csv, epochs.csv, metrics.json), model.pt, and the
/// DistributedTester's confusion.csv and test.json. Throws pnn::error for bad
/// options or data, and pnn::error(run_failed) when a worker fails.
hogwild_report run_hogwild(const hogwild_options& options);

/// Seconds from the start of training until the moving average in loss.csv first
/// reaches `target` (NaN if it never does).
double time_to_loss(const hogwild_report& report, double target, int64_t window = 50);

/// Every step of every worker merged by time, with the moving average over the last
/// `window` steps: the rows of loss.csv (time, worker, step, loss, loss_smoothed).
struct loss_point {
  double time = 0;
  int32_t worker = 0;
  int64_t step = 0;
  double loss = 0;
  double smoothed = 0;
};
std::vector<loss_point> merged_loss_curve(const hogwild_report& report, int64_t window = 50);
/// The same for any workers' traces (distributed SGD's too).
std::vector<loss_point> merged_loss_curve(const std::vector<const hogwild_worker_report*>& workers,
                                          int64_t window = 50);

/// Writes loss.csv (merged_loss_curve) and loss_worker<i>.csv (time, epoch, batch,
/// step, loss, loss_smoothed) for `workers` into `out`.
void write_loss_files(const std::filesystem::path& out,
                      const std::vector<const hogwild_worker_report*>& workers, int64_t window);

} // namespace pnn
