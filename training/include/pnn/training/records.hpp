#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pnn::training {

/// The loss of one optimizer step.
struct step_record {
  double time = 0; ///< seconds since the job started (including time before a resume)
  int64_t epoch = 0;
  int64_t batch = 0; ///< batch within the epoch
  int64_t step = 0;  ///< optimizer steps since the job started
  double loss = 0;
  double lr = 0;
};

/// What one epoch achieved.
struct epoch_record {
  int64_t epoch = 0;
  double time = 0; ///< seconds since the job started, at the end of the epoch
  double seconds = 0; ///< duration of the epoch, evaluation included
  double train_loss = 0;
  double train_accuracy = 0;
  double val_loss = 0;     ///< NaN when the job has no validation set
  double val_accuracy = 0; ///< NaN when the job has no validation set
  double lr = 0; ///< learning rate at the end of the epoch
};

nlohmann::json to_json(const step_record& r);
nlohmann::json to_json(const epoch_record& r);
step_record step_from_json(const nlohmann::json& j);
epoch_record epoch_from_json(const nlohmann::json& j);

std::string steps_csv(const std::vector<step_record>& records);
std::string epochs_csv(const std::vector<epoch_record>& records);
/// Confusion matrix as CSV with class names as header and first column.
std::string confusion_csv(const std::vector<std::vector<int64_t>>& confusion,
                          const std::vector<std::string>& classes);

/// Writes `content` to `file` atomically: a temporary file in the same folder is
/// written, flushed and renamed over `file`, so a reader (or a crash) sees the old
/// or the new content, never a torn one. Creates missing folders. Throws
/// pnn::error(io_error) naming the file (disk full, permission denied, ...).
void write_file_atomic(const std::filesystem::path& file, const std::string& content);

/// Creates `dir` (and parents); throws pnn::error(io_error) naming it on failure.
void ensure_directory(const std::filesystem::path& dir);

/// The output folder named by `flag` (e.g. "--out"): created when missing and checked
/// writable (a probe file is created and removed), so a bad folder is refused before
/// any work starts. Throws pnn::error(invalid_argument) naming the flag and the folder.
void ensure_output_folder(const std::filesystem::path& dir, const std::string& flag);

/// Reads a whole text file; throws pnn::error naming it.
std::string read_text_file(const std::filesystem::path& file);

/// The private folder of a job that runs on a host other than its coordinator's:
/// the job writes its checkpoints here (the coordinator's folder is not on this
/// host), each is read back to be sent home, and the folder goes when this object
/// does. (temp_dir/pnn-node-PID-N.)
class scratch_folder {
public:
  /// Creates the folder; throws pnn::error(io_error) when it cannot.
  scratch_folder();
  ~scratch_folder();
  scratch_folder(const scratch_folder&) = delete;
  scratch_folder& operator=(const scratch_folder&) = delete;

  const std::filesystem::path& path() const {
    return path_;
  }
  /// Writes `bytes` as latest.pt (a checkpoint to resume from).
  void put_latest(const std::vector<char>& bytes);
  /// latest.pt's bytes, once the job wrote the checkpoint of `epoch`; epoch_<epoch>.pt
  /// is removed (only the latest is kept here). Throws pnn::error naming the file.
  std::vector<char> take_checkpoint(int64_t epoch);

private:
  std::filesystem::path path_;
};

} // namespace pnn::training
