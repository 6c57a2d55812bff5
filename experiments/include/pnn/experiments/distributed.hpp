#pragma once

#include <pnn/experiments/hogwild.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/transforms.hpp>

#include <filesystem>
#include <string>

namespace pnn {

/// HOGWILD training on this host shaped like the reference's Python API (there named
/// DistributedTrainer, though it ran on one host):
///
///   auto model = pnn::models::make_model("lenet5", 1, 10);
///   pnn::hogwild_trainer trainer(2, criterion, "runs/hw", 32);
///   trainer(model, data.train, get_optimizer, "multistep:milestones=2/4,unit=epoch", 6);
///   pnn::model_tester tester(data.test, "runs/hw", 256);
///   tester(*model);
///
/// Trains `model` in place with `num_workers` worker actors on this host (see
/// hogwild_options for what is shared and what is per worker) and writes the run's
/// files under root_dir (run_hogwild's list, without the test).
class hogwild_trainer {
public:
  /// `criterion` may be empty (cross-entropy); `num_workers` 0 is one per core.
  hogwild_trainer(int num_workers, training::criterion_fn criterion, std::filesystem::path root_dir,
                  int64_t batch_size = 32);

  /// Trains `model` (built by make_model, so replicas can be built by its registry
  /// name) on `train_dataset` for `epochs` epochs. `get_optimizer` builds each
  /// worker's optimizer from its replica's parameters (empty: options().optimizer,
  /// Adam 1e-3 by default); `scheduler` is a schedule spec ("none", "cosine",
  /// "multistep:milestones=2/4,unit=epoch"), one schedule per worker.
  hogwild_report operator()(const models::network_ptr& model, training::dataset_ptr train_dataset,
                            training::optimizer_factory get_optimizer, const std::string& scheduler,
                            int64_t epochs);

  /// Every other knob (seeds, threads per worker, progress, lr, transforms via customize).
  hogwild_options& options() {
    return options_;
  }

private:
  hogwild_options options_;
  training::criterion_fn criterion_;
};

/// Tests a model on a test set (the reference's DistributedTester; no actors): accuracy, loss, per-class accuracy and the confusion
/// matrix, written to root_dir as confusion.csv and test.json.
class model_tester {
public:
  /// The transform is the test set's default evaluation transform (by its name);
  /// change it with transform().
  model_tester(training::dataset_ptr test_dataset, std::filesystem::path root_dir,
               int64_t batch_size = 256);

  /// Evaluates `model` (in eval mode, without gradients, at the calling thread's
  /// intra-op thread count), writes the files and returns the evaluation.
  training::evaluation operator()(models::Network& model);

  training::transform_options& transform() {
    return transform_;
  }

private:
  training::dataset_ptr data_;
  std::filesystem::path root_;
  int64_t batch_size_;
  training::transform_options transform_;
};

/// The reference's names (kept for code written against them).
using DistributedTrainer = hogwild_trainer;
using DistributedTester = model_tester;

} // namespace pnn
