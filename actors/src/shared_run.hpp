#pragma once

// What `hogwild` and `sgd` share: the checks of their common options and the
// summary.json keys they write alike (private to pnn_actors).

#include <pnn/error.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/schedules.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace pnn::detail {

/// Throws pnn::error(invalid_argument) on the first bad option both commands have:
/// the model (by name, or an initial model built by make_model), the scheduler and
/// optimizer, epochs, batch sizes, threads, the loss window and --out.
template <class Options>
void validate_shared(const char* command, const Options& o) {
  auto bad = [](const std::string& msg) { throw pnn::error(error_code::invalid_argument, msg); };
  if (!o.initial_model && !models::has_model(o.model))
    models::make_model(o.model, 1, 10); // throws the error listing valid names
  if (o.initial_model && o.initial_model->registry_name().empty())
    bad(std::string(command)
        + ": the model was not built by make_model; register it with register_model and "
          "build it by name, so that workers can build replicas of it");
  training::schedule_options::parse(o.scheduler);
  training::optimizer_options::parse(o.optimizer, o.lr);
  if (o.epochs < 1)
    bad("--epochs " + std::to_string(o.epochs) + ": expected at least 1");
  if (o.batch_size < 1)
    bad("--batch-size " + std::to_string(o.batch_size) + ": expected at least 1");
  if (o.threads_per_worker < 1 || o.threads_per_worker > 1024)
    bad("--threads-per-worker " + std::to_string(o.threads_per_worker) + ": expected 1..1024");
  if (o.test_batch_size < 1)
    bad("--test-batch-size " + std::to_string(o.test_batch_size) + ": expected at least 1");
  if (o.loss_window < 1)
    bad("--loss-window " + std::to_string(o.loss_window) + ": expected at least 1");
  if (o.out.empty())
    bad("--out: expected the output folder");
}

/// A number for JSON, or null when it is NaN or infinite (JSON has neither).
inline nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

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
template <class Report, class Options>
nlohmann::json shared_summary(const char* command, const Report& r, const Options& o,
                              const run_facts& facts) {
  nlohmann::json per_class = nlohmann::json::array();
  if (!r.confusion.empty()) {
    training::evaluation e;
    e.confusion = r.confusion;
    for (auto a : e.per_class_accuracy())
      per_class.push_back(finite_or_null(a));
  }
  return {{"command", command},
          {"wall_seconds", r.wall_seconds},
          {"cpu_utilization_mean", r.cpu_utilization_mean},
          {"test_accuracy", finite_or_null(r.test_accuracy)},
          {"test_loss", finite_or_null(r.test_loss)},
          {"samples_per_second", r.samples_per_second},
          {"train_seconds", r.train_seconds},
          {"final_train_loss", finite_or_null(r.final_train_loss)},
          {"threads_per_worker", o.threads_per_worker},
          {"cores", facts.cores},
          {"dataset", facts.dataset},
          {"train_samples", facts.train_samples},
          {"test_samples", facts.test_samples},
          {"model", facts.model},
          {"parameters", facts.parameters},
          {"optimizer", o.optimizer},
          {"lr", o.lr},
          {"scheduler", o.scheduler},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"seed", o.seed},
          {"shard_seed", o.shard_seed},
          {"user_cpu_seconds", r.user_cpu_seconds},
          {"system_cpu_seconds", r.system_cpu_seconds},
          {"peak_rss_bytes", r.peak_rss_bytes},
          {"per_class_accuracy", per_class},
          {"confusion", r.confusion}};
}

} // namespace pnn::detail
