#pragma once

#include <pnn/training/dataset.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/schedules.hpp>
#include <pnn/training/transforms.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pnn::models {
class Network;
}

namespace pnn::training {

class batch_queue;

/// Loss of a batch of logits against int64 labels, reduced to a mean.
using criterion_fn =
  std::function<torch::Tensor(const torch::Tensor& logits, const torch::Tensor& labels)>;

/// Cross-entropy, the default criterion.
criterion_fn cross_entropy();

/// Builds an optimizer over a model's parameters (in-process only: a function
/// cannot cross the network; remote jobs use `job_options::optimizer`).
using optimizer_factory =
  std::function<std::unique_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor> parameters)>;

/// Everything one training job needs besides its data. One source of defaults for
/// the CLI and the C++ API.
struct job_options {
  std::string model = "lenet5";
  optimizer_options optimizer;
  schedule_options schedule;
  int64_t epochs = 1;
  int64_t batch_size = 32;
  uint64_t seed = 1;
  /// LibTorch intra-op threads while this job runs.
  int threads = 1;
  /// Write a checkpoint every this many epochs (0: never); "latest.pt" is
  /// refreshed at each of them.
  int64_t checkpoint_every = 0;
  /// Where checkpoints go; empty: nowhere.
  std::filesystem::path checkpoint_dir;
  transform_options train_transform;
  transform_options eval_transform;
  int64_t eval_batch_size = 256; ///< large eval batches cost memory, not speed
  /// Evaluate the validation set after every this many epochs and after the last
  /// (0: after the last only). An epoch not validated has NaN validation figures.
  /// A plateau schedule needs every epoch's validation loss: other values are
  /// refused with it.
  int64_t validate_every = 1;
  /// Pause after this epoch (0: never; else fewer than `epochs`): the epoch is
  /// validated as a last one would be and done() holds from then on, while the
  /// schedule still runs over `epochs`; a checkpoint taken there continues (with a
  /// later pause_at, or 0) exactly as the job would have gone on.
  int64_t pause_at = 0;
  /// The dataset the validation indices refer to (null: the training dataset's):
  /// `pnn-node train --validate-every` validates on the test set.
  dataset_ptr validation_data;
  criterion_fn criterion;        ///< empty: cross-entropy
  /// When set, builds the optimizer instead of `optimizer` (whose lr still seeds
  /// the schedule).
  optimizer_factory make_optimizer;
  /// When set, the job takes its batches from this queue, shared with other jobs
  /// (HOGWILD's dynamic shards), instead of shuffling its own `train` indices: an
  /// epoch ends when the queue has no batch left for it. Its nominal batches per
  /// epoch are the queue's divided by its consumers. A checkpoint of such a job
  /// keeps its model and optimizer but not its place in the shared epoch.
  std::shared_ptr<batch_queue> shared_batches;
  /// What the job trains, as "key=value;..." (job_settings of its job_spec):
  /// written into its checkpoints, and a checkpoint written with other settings is
  /// refused (empty: not checked).
  std::string settings;
};

/// How two settings strings ("key=value;...") differ, e.g. "epochs 2, now 3"
/// ("" when they are equal).
std::string settings_difference(const std::string& was, const std::string& now);

/// One training job, no actors: a model, its optimizer and schedule, trained on
/// index views of a shared dataset. It runs in slices (run(n) does at most n
/// batches) so a caller can interleave other work, and is deterministic for a
/// given seed with one intra-op thread.
class training_job {
public:
  /// Builds the model (initialised from `options.seed`), optimizer and schedule.
  /// `validation` may be empty. Throws pnn::error on bad options.
  training_job(job_options options, dataset_ptr data, std::vector<int64_t> train,
               std::vector<int64_t> validation);
  ~training_job();

  training_job(const training_job&) = delete;
  training_job& operator=(const training_job&) = delete;

  /// Trains at most `max_batches` batches; an epoch's end evaluates, steps
  /// per-epoch schedules and checkpoints. Returns true once every epoch is done.
  /// Throws pnn::error(run_failed) on a non-finite loss; LibTorch errors propagate.
  bool run(int64_t max_batches);

  /// Trains to the end.
  void run_to_end();

  bool done() const;
  int64_t epochs_done() const;
  int64_t batch_in_epoch() const;
  int64_t batches_per_epoch() const;
  int64_t steps_done() const;
  /// Samples trained so far (all epochs).
  int64_t samples_done() const;
  double elapsed_seconds() const;

  /// Changes the intra-op thread count from the next run() on.
  void set_threads(int threads);
  int threads() const;

  const std::vector<step_record>& step_records() const;
  const std::vector<epoch_record>& epoch_records() const;
  /// The last validation evaluation (empty when there is no validation set).
  const std::optional<evaluation>& last_validation() const;

  /// Called after every step / every epoch (e.g. to forward metrics).
  std::function<void(const step_record&)> on_step;
  std::function<void(const epoch_record&)> on_epoch;
  /// Called after each step's backward pass, before the optimizer step, with the
  /// step's learning rate: the model's parameters hold their gradients (e.g. for a
  /// parameter holder that runs the optimizer).
  std::function<void(double lr)> after_backward;

  /// Evaluates the current model on `indices` of `data` with the eval transform.
  evaluation evaluate(const dataset& data, const std::vector<int64_t>& indices);

  /// Writes model, optimizer, schedule, position, RNG state and records to `file`
  /// atomically. Throws pnn::error(io_error).
  void save_checkpoint(const std::filesystem::path& file) const;

  /// Restores a checkpoint written by save_checkpoint for the same model and
  /// optimizer. Throws pnn::error naming the file when it is missing or does not fit.
  void load_checkpoint(const std::filesystem::path& file);

  std::shared_ptr<models::Network> model() const;
  torch::optim::Optimizer& optimizer();
  const lr_schedule& schedule() const;
  const job_options& options() const;

private:
  struct impl;
  std::unique_ptr<impl> d_;
};

/// Writes a job's records into `dir` atomically: steps.csv, epochs.csv, metrics.json
/// (steps, epochs and, when `eval` is given, that evaluation under `eval_name`) and
/// confusion.csv of `eval`.
void write_job_records(const std::filesystem::path& dir, const training_job& job,
                       const evaluation* eval, const std::string& eval_name,
                       const std::vector<std::string>& classes);

/// The files write_job_records writes, as (name, content) pairs, for a job whose
/// records go to another host.
std::vector<std::pair<std::string, std::string>>
job_record_files(const training_job& job, const evaluation* eval, const std::string& eval_name,
                 const std::vector<std::string>& classes);

/// The newest checkpoint in `dir` ("latest.pt"), if any.
std::optional<std::filesystem::path> find_latest_checkpoint(const std::filesystem::path& dir);

/// Builds a fresh model by registry name with weights initialised from `seed`,
/// independent of other threads drawing random numbers at the same time.
std::shared_ptr<models::Network> make_seeded_model(const std::string& name, int64_t in_channels,
                                                   int64_t num_classes, uint64_t seed);

/// Seconds per training step (forward, backward, Adam step) of `model` on random
/// batches of `batch_size` images channels x size x size, at the calling thread's
/// intra-op thread count: the median of `steps` timed steps after one warm-up.
/// Used to order K-fold jobs longest first.
double probe_step_seconds(const std::string& model, int64_t channels, int64_t size,
                          int64_t num_classes, int64_t batch_size, int steps = 3);

/// Makes the current thread use `threads` LibTorch intra-op threads (see DESIGN.md:
/// read the count once before setting it, or a first ATen call can reset it).
void use_intra_op_threads(int threads);

} // namespace pnn::training
