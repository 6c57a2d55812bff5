#pragma once

// A `pnn-node serve` child process for the SGD benchmarks (PNN_NODE_PATH is the
// binary, set by bench/CMakeLists.txt).

#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pnn::bench {

/// `pnn-node serve --port 0 --slots N` on 127.0.0.1; stopped with SIGTERM.
class serve_process {
public:
  explicit serve_process(int slots) {
    int fds[2];
    if (::pipe(fds) != 0)
      throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::close(fds[0]);
      ::close(fds[1]);
      const std::string s = std::to_string(slots);
      ::execl(PNN_NODE_PATH, PNN_NODE_PATH, "serve", "--port", "0", "--slots", s.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    char c = 0;
    pollfd p{fds[0], POLLIN, 0};
    while (::poll(&p, 1, 30000) > 0 && ::read(fds[0], &c, 1) == 1 && c != '\n')
      line += c;
    ::close(fds[0]);
    auto at = line.find("127.0.0.1:");
    if (at == std::string::npos)
      throw std::runtime_error("pnn-node serve did not start: " + line);
    address_ = "127.0.0.1:" + std::to_string(std::stoi(line.substr(at + 10)));
  }
  ~serve_process() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  const std::string& address() const {
    return address_;
  }
  /// CPU seconds (user + system) the process has used so far (0 once it is gone).
  double cpu_seconds() const {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid_));
    std::FILE* f = std::fopen(path, "r");
    if (!f)
      return 0;
    char buf[1024] = {};
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')'); // after the command's name
    unsigned long utime = 0, stime = 0;
    if (!p || std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                          &stime) != 2)
      return 0;
    return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  /// kill -9, as a host that dies (the destructor still reaps it).
  void kill_hard() {
    ::kill(pid_, SIGKILL);
  }

private:
  pid_t pid_ = -1;
  std::string address_;
};

} // namespace pnn::bench
