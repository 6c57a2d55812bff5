#pragma once

// summary.json as a type: what kfold, hogwild, sgd (and train) write and what
// `pnn-node report` reads, through the same to_json / from_json. The keys scripts
// depend on (docs/outputs.md) are typed fields; keys only some runs write and no
// reader needs typed stay in `more`, as written, so nothing is lost on a round trip.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace pnn {

/// One K-fold job's entry in "jobs". Times in seconds since the run started; NaN
/// figures (a failed job) are null in JSON.
struct job_summary {
  std::string model;
  std::string scheduler;
  int32_t fold = 0;
  /// Its configuration's name ("lenet5/cosine/lr=0.01": every grid field that
  /// varies) and its folder under --out; "" in files written before grids (the
  /// accessors below then give model/scheduler and model/scheduler/fold<k>).
  std::string config;
  std::string dir;
  std::string host = "local";
  int32_t slot = 0;
  bool ok = false;
  std::string error;
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double train_loss = std::numeric_limits<double>::quiet_NaN();
  double started_at = 0;
  double finished_at = 0;
  nlohmann::json more = nlohmann::json::object(); ///< threads, epochs, ... as written

  std::string config_name() const;
  /// Its folder relative to --out.
  std::string folder() const;
};

/// One configuration's row of a K-fold's "table": validation accuracy over folds.
struct cell_summary {
  std::string model;
  std::string scheduler;
  double val_accuracy_mean = 0;
  double val_accuracy_std = 0;
  int32_t folds_ok = 0;
  /// The configuration's name and its other grid fields; absent in files written
  /// before grids (config_name() is then model/scheduler).
  std::string config;
  std::optional<std::string> optimizer;
  std::optional<double> lr;
  std::optional<int64_t> batch_size;
  /// Stopped early by pruning (kfold --prune) after this many epochs.
  std::optional<int64_t> stopped_at_epoch;

  std::string config_name() const {
    return config.empty() ? model + "/" + scheduler : config;
  }
};

/// A job's entry as "jobs" lists it (and result.json holds it).
nlohmann::json to_json(const job_summary& job);
/// Reads one entry of "jobs"; throws pnn::error(malformed_file) naming `where`.
job_summary job_summary_from_json(const nlohmann::json& j, const std::string& where);

/// summary.json of any run.
struct run_summary {
  std::string command; ///< kfold, hogwild, sgd or train
  std::string dataset;
  double wall_seconds = 0;
  double cpu_utilization_mean = 0; ///< 0..1
  std::optional<int64_t> cores;
  // kfold
  std::optional<std::string> mode; ///< "parallel" or "serial"
  std::optional<int64_t> slots;
  std::vector<cell_summary> table;
  std::vector<job_summary> jobs;
  // hogwild, sgd (train: test_accuracy)
  std::optional<double> test_accuracy; ///< NaN when the model was not tested
  std::optional<double> samples_per_second;
  std::optional<double> final_train_loss;
  std::optional<int64_t> workers;         ///< worker count
  std::optional<size_t> worker_list_size; ///< entries of "worker_list"
  /// Test accuracy per class (NaN: no samples); empty when not tested.
  std::optional<std::vector<double>> per_class_accuracy;
  std::optional<std::vector<std::string>> classes; ///< class names, when written
  /// Every other key, as written.
  nlohmann::json more = nlohmann::json::object();

  /// The JSON of summary.json (the typed fields over `more`).
  nlohmann::json to_json() const;
  /// Reads summary.json's content; throws pnn::error(malformed_file) naming `file`
  /// and the key when a typed key has the wrong type or "command" is missing.
  static run_summary from_json(const nlohmann::json& j, const std::string& file);
  /// Reads `dir`/summary.json; throws pnn::error naming the file (file_not_found,
  /// malformed_file).
  static run_summary read(const std::filesystem::path& dir);
};

} // namespace pnn
