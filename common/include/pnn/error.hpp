#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pnn {

/// What went wrong, coarse enough for an exit code and a CAF error category.
enum class error_code : std::uint8_t {
  none = 0,
  invalid_argument, ///< a flag, option or spec with a bad value (exit 2)
  file_not_found,   ///< a file the user named or implied does not exist (exit 2)
  malformed_file,   ///< a file exists but its content is not what was expected (exit 2)
  io_error,         ///< reading or writing failed (disk full, permissions) (exit 1)
  run_failed,       ///< training itself failed (NaN loss, LibTorch error) (exit 1)
  // How a job ended without finishing (job_result::code), each a failed run (exit 1):
  worker_lost,   ///< the worker (or its host) went away while it ran the job
  worker_busy,   ///< the worker was running another job
  cancelled,     ///< someone cancelled the job
  holder_failed, ///< the parameter holder did not answer in time, or is gone
  interrupted,   ///< the run was interrupted (SIGINT/SIGTERM); the job saved where it was
};

/// Short name of an error code, for messages and the CAF error category.
inline const char* to_string(error_code code) {
  switch (code) {
  case error_code::none:
    return "none";
  case error_code::invalid_argument:
    return "invalid_argument";
  case error_code::file_not_found:
    return "file_not_found";
  case error_code::malformed_file:
    return "malformed_file";
  case error_code::io_error:
    return "io_error";
  case error_code::run_failed:
    return "run_failed";
  case error_code::worker_lost:
    return "worker_lost";
  case error_code::worker_busy:
    return "worker_busy";
  case error_code::cancelled:
    return "cancelled";
  case error_code::holder_failed:
    return "holder_failed";
  case error_code::interrupted:
    return "interrupted";
  }
  return "unknown";
}

/// True for errors caused by the user's input: they exit with code 2.
inline bool is_input_error(error_code code) {
  return code == error_code::invalid_argument || code == error_code::file_not_found
    || code == error_code::malformed_file;
}

/// The one exception type pnn throws at its boundaries; `main` turns it into a
/// one-line message and an exit code (2 for bad input, 1 for a failed run).
class error : public std::runtime_error {
public:
  error(error_code code, const std::string& message) : std::runtime_error(message), code_(code) {
  }

  error_code code() const noexcept {
    return code_;
  }

private:
  error_code code_;
};

} // namespace pnn
