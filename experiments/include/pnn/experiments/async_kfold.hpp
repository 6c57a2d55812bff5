#pragma once

#include <pnn/experiments/kfold.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/job.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pnn {

/// A job customization (kfold_options / hogwild_options::customize) that sets the
/// criterion and the optimizer factory, each when non-empty, then calls `then` (when
/// non-empty): what the reference-shaped facades (AsyncKFold, DistributedTrainer)
/// hand their jobs.
std::function<void(const job_spec&, training::job_options&)>
customize_jobs(training::criterion_fn criterion, training::optimizer_factory make_optimizer,
               std::function<void(const job_spec&, training::job_options&)> then);

/// K-fold cross-validation shaped like the reference's Python API (there named
/// AsyncKFold; the call returns when every job has ended):
///
///   pnn::kfold_experiment kfold(k, "fashion-mnist", "runs/kf", criterion, 32, /*parallelize=*/true);
///   auto report = kfold({"lenet5", "alexnet"}, {"cosine", "warm"}, get_optimizer, {2});
///
/// Runs every model x scheduler x fold job on this host's cores through the actors
/// (run_kfold) and returns (and writes under root_dir) the results.
class kfold_experiment {
public:
  /// What each job trains for.
  struct trainer_params {
    int64_t epochs = 1;
    int64_t save_checkpoint_frequency = 0; ///< epochs between checkpoints (0: none)
    std::string progress = "auto";         ///< terminal output: auto, plain, none
  };

  /// `criterion` may be empty (cross-entropy); `parallelize` false runs one job at a
  /// time with every core (the serial comparison mode).
  kfold_experiment(int k, std::string dataset, std::filesystem::path root_dir,
                   training::criterion_fn criterion = {}, int64_t batch_size = 32,
                   bool parallelize = true);

  /// Models by registry name; schedulers as specs ("cosine", "warm:t_0=3");
  /// `get_optimizer` builds each job's optimizer from its model's parameters (empty:
  /// options().optimizer, Adam 1e-3 by default).
  kfold_report operator()(const std::vector<std::string>& models,
                          const std::vector<std::string>& schedulers,
                          training::optimizer_factory get_optimizer, const trainer_params& params);

  /// The same with models given as factories: each is registered under its name.
  kfold_report
  run_factories(const std::vector<std::pair<std::string, models::model_factory>>& models,
                const std::vector<std::string>& schedulers,
                training::optimizer_factory get_optimizer, const trainer_params& params);

  /// Every other knob (data_dir, subset, seeds, slots, lr, resume, ...).
  kfold_options& options() {
    return options_;
  }

private:
  kfold_options options_;
  training::criterion_fn criterion_;
};

/// The reference's name for kfold_experiment (kept for code written against it).
using AsyncKFold = kfold_experiment;

} // namespace pnn
