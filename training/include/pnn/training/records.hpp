#pragma once

#include <pnn/files.hpp>

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
  double time = 0;    ///< seconds since the job started, at the end of the epoch
  double seconds = 0; ///< duration of the epoch, evaluation included
  double train_loss = 0;
  double train_accuracy = 0;
  double val_loss = 0;     ///< NaN when the job has no validation set
  double val_accuracy = 0; ///< NaN when the job has no validation set
  double lr = 0;           ///< learning rate at the end of the epoch
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

/// A number for JSON, or null when it is NaN or infinite (JSON has neither).
nlohmann::json number_or_null(double v);

/// The names of the record files a job writes (job_record_files): steps.csv,
/// epochs.csv, metrics.json, confusion.csv.
const std::vector<std::string>& record_file_names();

/// Writes the record files a job on another host sent back (job_record_files' names
/// and contents) into `dir`. Only record_file_names() are written, each once: a peer
/// does not choose which files the coordinator writes. Returns the names refused.
std::vector<std::string> write_record_files(const std::filesystem::path& dir,
                                            const std::vector<std::string>& names,
                                            const std::vector<std::string>& contents);

/// The steps log beside a job's checkpoints (steps.bin in the checkpoint's folder):
/// an 8-byte header "PNNSTEP1", then one 48-byte record per optimizer step (time,
/// epoch, batch, step, loss, lr; little-endian doubles and int64s). A checkpoint
/// records how many of them it covers (meta "steps_logged"), so checkpoints stay the
/// same size however long the run, and saving one appends only the new steps.
inline constexpr const char* steps_file_name = "steps.bin";
inline constexpr size_t step_record_bytes = 48;

/// Records [from, end) of `steps`, encoded as in steps.bin (no header).
std::string encode_steps(const std::vector<step_record>& steps, size_t from = 0);
/// Decodes records encoded by encode_steps; throws pnn::error(malformed_file) naming
/// `what` when `bytes` is not a whole number of records.
std::vector<step_record> decode_steps(const std::string& bytes, const std::string& what);

/// Keeps the first `keep` records of steps file `file` (creating it when it does not
/// exist and `keep` is 0) and appends `records` (encode_steps' bytes): in place when
/// the file holds exactly `keep`, else (a run branched from an older checkpoint) by
/// replacing the file atomically, so a crash never mixes two runs' records. Throws
/// pnn::error naming the file when it holds fewer than `keep` records, is not a steps
/// file, or `records` is not a whole number of records.
void write_steps_file(const std::filesystem::path& file, int64_t keep, const std::string& records);
/// The records of steps file `file` (encode_steps' bytes): its first `count`, or all
/// when `count` < 0. Throws pnn::error naming the file when it is missing, not a
/// steps file, or shorter.
std::string read_steps_file(const std::filesystem::path& file, int64_t count = -1);

} // namespace pnn::training
