#pragma once

// Files as pnn writes them: atomically, with one-line errors naming the file.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace pnn {

/// Writes `content` to `file` atomically: a temporary file in the same folder is
/// written, flushed and renamed over `file`, so a reader (or a crash) sees the old
/// or the new content, never a torn one. Creates missing folders. Throws
/// pnn::error(io_error) naming the file (disk full, permission denied, ...).
void write_file_atomic(const std::filesystem::path& file, const std::string& content);

/// Appends `line` (which ends in '\n') to `file` in one write and flushes it to disk
/// before returning: a journal. A crash leaves every earlier line whole and at most
/// this one cut short. Creates the file and missing folders. Throws
/// pnn::error(io_error) naming the file.
void append_line_durable(const std::filesystem::path& file, const std::string& line);

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
/// does. (temp_dir/pnn-node-PID-XXXXXX: mkdtemp, mode 0700, a random name.)
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

  /// Removes scratch folders of processes that are gone (a serve node killed with
  /// SIGKILL leaves its folders behind): temp_dir/pnn-node-PID-* of this user whose
  /// PID no longer runs. Returns how many it removed.
  static size_t remove_stale();

private:
  std::filesystem::path path_;
};

} // namespace pnn
