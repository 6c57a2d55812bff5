#include <pnn/files.hpp>

#include <pnn/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
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
  auto tmp = file;
  tmp += ".tmp." + std::to_string(::getpid());
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
  static std::atomic<uint64_t> next{0};
  path_ = fs::temp_directory_path()
    / ("pnn-node-" + std::to_string(::getpid()) + "-" + std::to_string(next++));
  ensure_directory(path_);
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
