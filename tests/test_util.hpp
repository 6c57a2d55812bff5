#pragma once

// Helpers shared by the suites: temporary folders, files, child processes.

#include <pnn/error.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <cstdio>

#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pnn::test {

/// A fresh folder under /tmp, removed with its content at scope exit.
class temp_dir {
public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "pnn-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      std::abort();
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const {
    return path_;
  }
  std::filesystem::path operator/(const std::string& name) const {
    return path_ / name;
  }

private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& file,
                        const std::vector<unsigned char>& bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_text(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// The pnn::error code and message `f` throws; code none when it throws nothing.
inline std::pair<error_code, std::string> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const pnn::error& e) {
    return {e.code(), e.what()};
  }
  return {error_code::none, ""};
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Result of running a shell command.
struct process_result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// Runs `command` through /bin/sh with stdout and stderr captured to files.
inline process_result run_command(const std::string& command) {
  temp_dir tmp;
  auto full = command + " >" + (tmp / "out").string() + " 2>" + (tmp / "err").string();
  int status = std::system(full.c_str());
  process_result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_text(tmp / "out");
  r.err = read_text(tmp / "err");
  return r;
}

/// How much slower than a normal build this test binary runs: the environment's
/// PNN_TEST_TIME_SCALE (1..50, default 1; scripts/check-sanitizers.sh sets 5).
/// Tests that depend on time (peer timeouts, waits) multiply their constants by it.
inline double time_scale() {
  const char* text = std::getenv("PNN_TEST_TIME_SCALE");
  double v = text != nullptr ? std::atof(text) : 1.0;
  return v >= 1 && v <= 50 ? v : 1.0;
}

/// Polls `done` every 10 ms until it is true or `seconds` x time_scale() passed;
/// returns its last value.
template <class Predicate>
bool wait_until(Predicate done, double seconds) {
  const auto until = std::chrono::steady_clock::now()
    + std::chrono::duration<double>(seconds * time_scale());
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until)
      return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// `seconds` x time_scale(), as text for a flag.
inline std::string scaled(double seconds) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", seconds * time_scale());
  return buf;
}

/// A child process running `command` (through /bin/sh, exec'd) with its stdout on a
/// pipe; SIGTERM then SIGKILL at scope exit if it still runs.
class background_process {
public:
  explicit background_process(const std::string& command) {
    int fds[2];
    if (::pipe(fds) != 0)
      std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      // Dies with the test process: a test that aborts must not leave servers
      // behind that hold ctest's output pipe open (ctest would wait for them).
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      ::execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    fd_ = fds[0];
  }
  ~background_process() {
    stop(SIGTERM);
    if (fd_ >= 0)
      ::close(fd_);
  }
  background_process(const background_process&) = delete;
  background_process& operator=(const background_process&) = delete;

  /// The next line of stdout, or "" after `timeout_ms` (default 30 s x
  /// time_scale()) or at end of output.
  std::string read_line(int timeout_ms = -1) {
    if (timeout_ms < 0)
      timeout_ms = static_cast<int>(30000 * time_scale());
    std::string line;
    char c = 0;
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0)
        return line;
      if (::read(fd_, &c, 1) != 1)
        return line;
      if (c == '\n')
        return line;
      line += c;
    }
  }

  /// Sends `sig`, waits up to 10 s, then kills; returns the exit status (-1 if it
  /// had already been collected).
  int stop(int sig) {
    if (pid_ <= 0)
      return -1;
    ::kill(pid_, sig);
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      ::usleep(100000);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  /// Waits up to `timeout_ms` for the process to end by itself; returns its exit
  /// status, or -1 if it still runs.
  int wait_exit(int timeout_ms) {
    if (pid_ <= 0)
      return -1;
    int status = 0;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      ::usleep(20000);
    }
    return -1;
  }

  pid_t pid() const {
    return pid_;
  }

private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

} // namespace pnn::test
