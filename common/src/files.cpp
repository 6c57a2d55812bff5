#include <pnn/files.hpp>

#include <pnn/error.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace pnn {

namespace {

[[noreturn]] void io_fail(const fs::path& file, const std::string& what) {
  throw pnn::error(error_code::io_error, file.string() + ": " + what);
}

} // namespace

void ensure_directory(const fs::path& dir) {
  if (dir.empty())
    return;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    io_fail(dir,
            "cannot create folder (" + (ec ? ec.message() : std::string{"not a folder"}) + ")");
}

void ensure_output_folder(const fs::path& dir, const std::string& flag) {
  auto refuse = [&](const std::string& why) {
    throw pnn::error(error_code::invalid_argument, flag + " " + dir.string() + ": " + why);
  };
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    refuse("cannot create folder (" + (ec ? ec.message() : std::string{"not a folder"}) + ")");
  const auto probe = dir / (".pnn-write-check." + std::to_string(::getpid()));
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    refuse(std::string{"cannot write in folder ("} + std::strerror(errno) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

void write_file_atomic(const fs::path& file, const std::string& content) {
  ensure_directory(file.parent_path());
  // Unique per writer: two threads may replace the same file at once.
  static std::atomic<uint64_t> serial{0};
  auto tmp = file;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(serial++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    io_fail(file, std::string{"cannot write: "} + std::strerror(errno));
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    auto n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      io_fail(file, std::string{"write failed: "} + std::strerror(err));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    io_fail(file, std::string{"write failed: "} + std::strerror(err));
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    io_fail(file, std::string{"cannot replace: "} + std::strerror(err));
  }
}

void append_line_durable(const fs::path& file, const std::string& line) {
  ensure_directory(file.parent_path());
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    io_fail(file, std::string{"cannot append: "} + std::strerror(errno));
  ssize_t n;
  do
    n = ::write(fd, line.data(), line.size());
  while (n < 0 && errno == EINTR);
  const int err = n < 0 ? errno : (static_cast<size_t>(n) != line.size() ? ENOSPC : 0);
  const bool synced = ::fsync(fd) == 0;
  const int sync_err = errno;
  ::close(fd);
  if (err != 0)
    io_fail(file, std::string{"append failed: "} + std::strerror(err));
  if (!synced)
    io_fail(file, std::string{"append failed: "} + std::strerror(sync_err));
}

std::string read_text_file(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec))
    throw pnn::error(error_code::file_not_found, file.string() + ": file not found");
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw pnn::error(error_code::io_error, file.string() + ": cannot read");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

scratch_folder::scratch_folder() {
  auto pattern = (fs::temp_directory_path() / ("pnn-node-" + std::to_string(::getpid()) + "-XXXXXX"))
                   .string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw pnn::error(error_code::io_error,
                     pattern + ": cannot create a scratch folder: " + std::strerror(errno));
  path_ = pattern;
}

size_t scratch_folder::remove_stale() {
  size_t removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    const auto name = e.path().filename().string();
    const std::string prefix = "pnn-node-";
    if (name.rfind(prefix, 0) != 0)
      continue;
    const auto dash = name.find('-', prefix.size());
    const auto pid_text = name.substr(prefix.size(), dash - prefix.size());
    if (dash == std::string::npos || pid_text.empty()
        || pid_text.find_first_not_of("0123456789") != std::string::npos || pid_text.size() > 9)
      continue;
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid())
      continue; // not a folder of ours (a link, another user's)
    const auto pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH)
      continue; // its process runs (or cannot be told apart from running)
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    removed += rm ? 0 : 1;
  }
  return removed;
}

scratch_folder::~scratch_folder() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void scratch_folder::put_latest(const std::vector<char>& bytes) {
  write_file_atomic(path_ / "latest.pt", std::string(bytes.begin(), bytes.end()));
}

std::vector<char> scratch_folder::take_checkpoint(int64_t epoch) {
  const auto text = read_text_file(path_ / "latest.pt");
  std::error_code ec;
  fs::remove(path_ / ("epoch_" + std::to_string(epoch) + ".pt"), ec);
  return {text.begin(), text.end()};
}

} // namespace pnn
