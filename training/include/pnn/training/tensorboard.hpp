#pragma once

#include <pnn/training/records.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

// TensorBoard event files (<out>/tb/): what a run's jobs did, in the format
// TensorBoard reads (TFRecord frames of Event protobufs, training/proto/tensorboard.proto).
// Scalars are simple values; hyperparameters are the HParams plugin's experiment
// (at the tb/ root) and one session per run folder, so TensorBoard's HParams table
// compares configurations.
namespace pnn::training::tensorboard {

/// CRC-32C (Castagnoli), as TFRecord frames use it; `crc` continues an earlier value.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
/// TFRecord's masked CRC: rotated right by 15 bits plus 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

/// A hyperparameter's value: text, number or flag.
using hparam_value = std::variant<std::string, double, bool>;

struct hparam {
  std::string name;
  hparam_value value;
};

/// A hyperparameter of the experiment and the values it takes (a discrete domain).
struct hparam_info {
  std::string name;
  std::vector<hparam_value> values;
};

/// An event file's records, built in memory and written in one piece.
class event_file {
public:
  /// Begins with the file_version record at `wall_time` (seconds since the epoch).
  explicit event_file(double wall_time);

  void scalar(const std::string& tag, int64_t step, double wall_time, double value);
  /// The HParams experiment: its hyperparameters and the scalar tags it compares.
  void experiment(const std::vector<hparam_info>& hparams, const std::vector<std::string>& metrics,
                  double wall_time);
  /// This run's hyperparameters. Sessions with the same `group` form one row of
  /// TensorBoard's table (K-fold: a configuration's folds).
  void session_start(const std::vector<hparam>& hparams, const std::string& group,
                     double wall_time);
  void session_end(bool success, double wall_time);

  const std::string& bytes() const {
    return bytes_;
  }
  double wall_time() const {
    return wall_time_;
  }
  /// Writes the records into `dir` (created) as events.out.tfevents.<seconds>.pnn,
  /// whole (staged under a name TensorBoard does not read, then renamed), and
  /// removes the other pnn event files there: a job's file is written once its job
  /// ended and holds every step of it once, a resumed job's earlier steps included.
  std::filesystem::path write(const std::filesystem::path& dir) const;

private:
  void add(const std::string& event);
  std::string bytes_;
  double wall_time_;
};

/// What one training job did, as TensorBoard shows it.
struct job_run {
  std::vector<step_record> steps;
  std::vector<epoch_record> epochs;
  double clock_zero = 0;      ///< wall clock when the job's own clock read 0
  double finished_at = 0;     ///< wall clock
  double samples_per_epoch = 0;
  std::vector<hparam> hparams;
  std::string group;
  bool ok = true;
  /// Scalars at the end of the job (e.g. test/accuracy), at its last step.
  std::vector<std::pair<std::string, double>> final;
  /// A run that is this one job (train, hogwild, sgd): its file also holds the
  /// HParams experiment, its hparams each with its one value, comparing these tags.
  std::vector<std::string> experiment_metrics;
};

/// The job's event file: train/loss and train/lr at every optimizer step;
/// train/epoch_loss, train/samples_per_second (evaluation included), and
/// val/loss, val/accuracy for validated epochs, at their epoch; `final`; and the
/// HParams session (and experiment, with experiment_metrics).
event_file job_events(const job_run& job);

/// A record read back from an event file.
struct read_value {
  std::string tag;
  bool has_simple = false;
  double simple = 0;
  std::string plugin;      ///< plugin_name ("" for a plain scalar)
  std::string plugin_json; ///< the hparams plugin's data as JSON (protobuf's mapping)
};
struct read_event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<read_value> values;
};

/// Reads every record of an event file, checking each frame (both masked CRCs)
/// and parsing each Event; throws pnn::error(malformed_file) naming the file and
/// the record's offset at the first that is wrong.
std::vector<read_event> read_events(const std::filesystem::path& file);

/// The pnn event files under `dir` (recursively), sorted.
std::vector<std::filesystem::path> event_files(const std::filesystem::path& dir);

} // namespace pnn::training::tensorboard
