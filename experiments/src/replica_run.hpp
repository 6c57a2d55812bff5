#pragma once

// What `hogwild` and `sgd` share, both one model trained by many workers (private to
// pnn_experiments): their data, each worker's spec, the collector's labels, the
// training figures from the workers' traces, the test of the trained model, the
// run's spending and the summary.json keys they write alike.

#include <pnn/experiments/hogwild.hpp>
#include <pnn/experiments/options.hpp>
#include <pnn/experiments/session.hpp>
#include <pnn/experiments/summary.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/tensorboard.hpp>
#include <pnn/training/transforms.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pnn::detail {

std::string worker_name(size_t i);

/// This host's data: the in-process datasets when given, else the dataset by name.
training::dataset_pair replica_data(const data_group& d, const replica_group& r);

/// The dataset's name as the workers load it (an in-process dataset's own name).
std::string replica_dataset_name(const data_group& d, const replica_group& r);

/// Worker i of n: shard i of the training set, its own order (seed; derived for i > 0).
job_spec worker_spec(const data_group& d, const optimizer_group& opt, const schedule_group& s,
                     const replica_group& r, const std::string& model, const std::string& dataset,
                     int32_t i, int32_t n);

/// The evaluation transform of the workers' jobs (after the run's customize).
training::transform_options eval_transform(const job_spec& spec, const replica_group& r);

/// Training time, samples/s and the final training loss from the workers' traces.
void set_throughput(replica_report& r, const std::vector<const hogwild_worker_report*>& workers);

/// Tests `model` on `test` (confusion.csv and test.json in `out`); NaN figures when
/// the run is not tested.
void test_model(replica_report& r, models::Network& model, const job_spec& first,
                const replica_group& g, const training::dataset_ptr& test,
                const std::filesystem::path& out, int32_t cores);

/// The hyperparameters TensorBoard shows for a run of one model by `workers`
/// workers: model, optimizer, lr, scheduler, batch_size, epochs, workers, then `more`.
std::vector<training::tensorboard::hparam>
replica_hparams(const optimizer_group& opt, const schedule_group& s, const replica_group& g,
                const std::string& model, int32_t workers,
                std::vector<training::tensorboard::hparam> more);

/// <out>/tb/: each worker's train/loss and train/lr per step (tb/worker<i>/), and at
/// the root the run's HParams experiment and session with its end figures
/// (test/accuracy, test/loss, train/samples_per_second, train/final_loss); `ok`:
/// the session ended well (not interrupted, no worker failed). Called once the
/// report's figures are set (set_throughput, test_model); a file that cannot be
/// written is a warning.
void write_events(const std::filesystem::path& out, const replica_report& r,
                  const std::vector<const hogwild_worker_report*>& workers,
                  const std::vector<training::tensorboard::hparam>& hparams, bool ok);

/// Writes the model's parameters and buffers as a LibTorch archive.
void save_model(const models::Network& model, const std::filesystem::path& file);

/// Wall time, CPU time and peak memory since the run began.
void set_spending(replica_report& r, const run_meter& meter);

/// What a run trained on and with.
struct run_facts {
  std::string dataset;
  std::string model;
  int64_t parameters = 0;
  int64_t train_samples = 0;
  int64_t test_samples = 0;
  int32_t cores = 0;
};

/// The keys both commands write: the report's timings, CPU and test figures, the
/// optimisation options and the run's facts. Each command adds its own keys.
run_summary shared_summary(const char* command, const replica_report& r, const optimizer_group& opt,
                           const schedule_group& s, const replica_group& g, const run_facts& facts);

} // namespace pnn::detail
