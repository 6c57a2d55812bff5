#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/experiments/options.hpp>
#include <pnn/experiments/pruning.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace pnn::training {
struct job_options;
}

namespace pnn {

/// A K-fold experiment: a grid of configurations (models x schedulers x optimizers x
/// learning rates x batch sizes) x folds, each job trained on K-1 folds and validated
/// on the remaining one. One source of defaults for CLI and C++ API.
struct kfold_options : data_group,
                       optimizer_group,
                       schedule_group, ///< seed: initialisation/order seed of every job
                       cluster_group,  ///< hosts: their slots join the queue like local ones
                       output_group {
  std::vector<std::string> models{"lenet5"};
  std::vector<std::string> schedulers{"cosine"};
  /// More grid fields: a non-empty list replaces the single value of the same name
  /// (optimizer, lr, batch_size) and multiplies the grid by its length.
  std::vector<std::string> optimizers;
  std::vector<double> lrs;
  std::vector<int64_t> batch_sizes;
  int32_t folds = 2;
  uint64_t split_seed = 1; ///< seed of the fold split
  /// One job at a time with every core as intra-op threads (for comparison).
  bool serial = false;
  int32_t threads_per_job = 0; ///< 0: 1 (parallel) or all cores (serial)
  int32_t cores = 0;           ///< cores to use; 0: those this process may run on
  bool raise_threads_in_tail = true;
  int64_t checkpoint_every = 0; ///< epochs; 0: no checkpoints
  /// Validate each job after every this many epochs and after its last (0: the last
  /// only; not with a plateau schedule, which needs every epoch's validation loss).
  /// LeNet5 x 2 schedules x K=2 x 2 epochs on 60,000 images: 12.5 s with 1, 11.7 s with 0.
  int64_t validate_every = 1;
  bool resume = false;          ///< skip finished jobs, continue the others from checkpoints
  /// Stop configurations that are behind early: "none", or
  /// "halving[:eta=3,min_epochs=1]" (asynchronous successive halving over the grid:
  /// at each rung, min_epochs x eta^k epochs, a configuration's mean validation
  /// accuracy over its folds is compared with the others' there, and only the top
  /// 1/eta go on). Rung results and decisions go to <out>/pruning.jsonl; --resume
  /// replays it.
  std::string prune = "none";
  /// In-process only: decides instead of ASHA's top 1/eta which configurations go
  /// on at a rung (with prune "halving", whose rungs it keeps).
  prune_rule pruning_rule;
  bool estimate_costs = true;   ///< time a probe step per model to order jobs
  /// A file of hosts that may join while the run goes on (--hosts-file): one
  /// host:port per line, '#' comments. Re-read every `rejoin_interval` seconds;
  /// a listed host (or one of `hosts`) with no live workers is connected (again)
  /// and its slots join the queue. Hosts in it need not be up at the start.
  std::filesystem::path hosts_file;
  double rejoin_interval = 2; ///< seconds between looks for hosts to (re)join
  /// With every worker lost (or none yet), seconds to wait for a host to join
  /// before the run fails. Only when hosts can join (`hosts` or `hosts_file`).
  double wait_for_hosts = 60;
  /// In-process only: adjusts each job's options (criterion, optimizer factory).
  /// Applies to local jobs only: functions do not travel to other hosts.
  std::function<void(const job_spec&, training::job_options&)> customize;
};

/// One point of a K-fold grid; its K folds are K jobs (ids index*K .. index*K+K-1).
struct kfold_config {
  uint32_t index = 0; ///< in grid order: models, then schedulers, optimizers, lrs, batch sizes
  std::string model;
  std::string scheduler;
  std::string optimizer;
  double lr = 0;
  int64_t batch_size = 0;
  /// "lenet5/cosine", then each grid field that varies: "lenet5/cosine/sgd/lr=0.01/bs=64".
  std::string name;
  /// Its folder under --out: model/scheduler, then one level per varying field
  /// ("lenet5/cosine/sgd/lr_0.01/bs_64"); the folds' folders are inside.
  std::filesystem::path dir;
};

/// The grid's configurations in order (index 0..n-1).
std::vector<kfold_config> configurations(const kfold_options& options);

/// What a K-fold run produced (also written to `out`).
struct kfold_report {
  std::vector<job_result> jobs; ///< one per job, by id
  double wall_seconds = 0;
  double cpu_utilization_mean = 0;
  double user_cpu_seconds = 0;
  double system_cpu_seconds = 0;
  long long peak_rss_bytes = 0;
  nlohmann::json summary; ///< the content of summary.json
  /// SIGINT/SIGTERM ended the run early (output_group::handle_interrupts): jobs
  /// that had not finished saved where they were; `--resume` continues them.
  bool interrupted = false;
  /// Mean and std of validation accuracy per configuration, in grid order.
  struct cell {
    std::string model, scheduler;
    double mean = 0, std = 0;
    int folds_ok = 0;
    kfold_config config;
    /// Stopped by pruning after `epochs_done` epochs (mean and std are those of its
    /// folds there: its last rung).
    bool pruned = false;
    int64_t epochs_done = 0; ///< the most any of its folds trained
  };
  std::vector<cell> table;
};

/// The jobs of an experiment in grid order, K per configuration (ids 0..n-1), cost 0.
std::vector<job_spec> expand_jobs(const kfold_options& options);

/// Checks the options (names, numbers) without loading data; throws pnn::error.
void validate(const kfold_options& options);

/// Runs the experiment on this host's cores with its own actor system: a fold
/// dispatcher, one worker per slot and a metric collector. Writes the outputs of
/// DESIGN.md under options.out and returns the report. Throws pnn::error for bad
/// options or data; failed jobs are reported in the result, not thrown.
kfold_report run_kfold(const kfold_options& options);

/// Prints the accuracy table (per configuration, mean ± std over folds).
std::string format_table(const kfold_report& report);

} // namespace pnn
