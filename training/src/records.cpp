#include <pnn/training/records.hpp>

#include <pnn/error.hpp>
#include <pnn/files.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace pnn::training {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

const std::vector<std::string>& record_file_names() {
  static const std::vector<std::string> names{"steps.csv", "epochs.csv", "metrics.json",
                                              "confusion.csv"};
  return names;
}

std::vector<std::string> write_record_files(const std::filesystem::path& dir,
                                            const std::vector<std::string>& names,
                                            const std::vector<std::string>& contents) {
  const auto& allowed = record_file_names();
  std::vector<std::string> refused;
  std::vector<std::string> written;
  for (size_t f = 0; f < names.size(); ++f) {
    const auto& name = names[f];
    const bool known = std::find(allowed.begin(), allowed.end(), name) != allowed.end();
    const bool again = std::find(written.begin(), written.end(), name) != written.end();
    if (!known || again || f >= contents.size()) {
      refused.push_back(name);
      continue;
    }
    write_file_atomic(dir / name, contents[f]);
    written.push_back(name);
  }
  return refused;
}

namespace {

double number_or_nan(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : NAN;
}

std::string fmt(double v) {
  if (!std::isfinite(v))
    return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

} // namespace

nlohmann::json to_json(const step_record& r) {
  return {{"time", r.time},
          {"epoch", r.epoch},
          {"batch", r.batch},
          {"step", r.step},
          {"loss", number_or_null(r.loss)},
          {"lr", r.lr}};
}

nlohmann::json to_json(const epoch_record& r) {
  return {{"epoch", r.epoch},
          {"time", r.time},
          {"seconds", r.seconds},
          {"train_loss", number_or_null(r.train_loss)},
          {"train_accuracy", number_or_null(r.train_accuracy)},
          {"val_loss", number_or_null(r.val_loss)},
          {"val_accuracy", number_or_null(r.val_accuracy)},
          {"lr", r.lr}};
}

step_record step_from_json(const nlohmann::json& j) {
  return {j.at("time").get<double>(),  j.at("epoch").get<int64_t>(), j.at("batch").get<int64_t>(),
          j.at("step").get<int64_t>(), number_or_nan(j.at("loss")),  j.at("lr").get<double>()};
}

epoch_record epoch_from_json(const nlohmann::json& j) {
  epoch_record r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.time = j.at("time").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.train_loss = number_or_nan(j.at("train_loss"));
  r.train_accuracy = number_or_nan(j.at("train_accuracy"));
  r.val_loss = number_or_nan(j.at("val_loss"));
  r.val_accuracy = number_or_nan(j.at("val_accuracy"));
  r.lr = j.at("lr").get<double>();
  return r;
}

std::string steps_csv(const std::vector<step_record>& records) {
  std::ostringstream out;
  out << "time,epoch,batch,step,loss,lr\n";
  for (const auto& r : records)
    out << fmt(r.time) << ',' << r.epoch << ',' << r.batch << ',' << r.step << ',' << fmt(r.loss)
        << ',' << fmt(r.lr) << '\n';
  return out.str();
}

std::string epochs_csv(const std::vector<epoch_record>& records) {
  std::ostringstream out;
  out << "epoch,time,seconds,train_loss,train_accuracy,val_loss,val_accuracy,lr\n";
  for (const auto& r : records)
    out << r.epoch << ',' << fmt(r.time) << ',' << fmt(r.seconds) << ',' << fmt(r.train_loss) << ','
        << fmt(r.train_accuracy) << ',' << fmt(r.val_loss) << ',' << fmt(r.val_accuracy) << ','
        << fmt(r.lr) << '\n';
  return out.str();
}

std::string confusion_csv(const std::vector<std::vector<int64_t>>& confusion,
                          const std::vector<std::string>& classes) {
  auto name = [&](size_t c) {
    auto n = c < classes.size() ? classes[c] : std::to_string(c);
    return "\"" + n + "\"";
  };
  std::ostringstream out;
  out << "true\\predicted";
  for (size_t c = 0; c < confusion.size(); ++c)
    out << ',' << name(c);
  out << '\n';
  for (size_t r = 0; r < confusion.size(); ++r) {
    out << name(r);
    for (auto v : confusion[r])
      out << ',' << v;
    out << '\n';
  }
  return out.str();
}

} // namespace pnn::training

namespace pnn::training {

namespace {

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "steps.bin is written in host byte order, which must be little-endian"
#endif

constexpr char steps_header[] = "PNNSTEP1";
constexpr size_t steps_header_bytes = sizeof(steps_header) - 1;

template <class T>
void put(char*& out, T v) {
  std::memcpy(out, &v, sizeof v);
  out += sizeof v;
}

template <class T>
T take(const char*& in) {
  T v;
  std::memcpy(&v, in, sizeof v);
  in += sizeof v;
  return v;
}

/// A file descriptor closed on scope exit.
struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

[[noreturn]] void steps_file_error(const fs::path& file, const std::string& what) {
  throw pnn::error(error_code::io_error, file.string() + ": " + what);
}

} // namespace

std::string encode_steps(const std::vector<step_record>& steps, size_t from) {
  from = std::min(from, steps.size());
  std::string bytes((steps.size() - from) * step_record_bytes, '\0');
  char* out = bytes.data();
  for (size_t i = from; i < steps.size(); ++i) {
    const auto& r = steps[i];
    put(out, r.time);
    put(out, r.epoch);
    put(out, r.batch);
    put(out, r.step);
    put(out, r.loss);
    put(out, r.lr);
  }
  return bytes;
}

std::vector<step_record> decode_steps(const std::string& bytes, const std::string& what) {
  if (bytes.size() % step_record_bytes != 0)
    throw pnn::error(error_code::malformed_file,
                     what + ": " + std::to_string(bytes.size()) + " bytes of steps, not a multiple of "
                       + std::to_string(step_record_bytes));
  std::vector<step_record> steps(bytes.size() / step_record_bytes);
  const char* in = bytes.data();
  for (auto& r : steps) {
    r.time = take<double>(in);
    r.epoch = take<int64_t>(in);
    r.batch = take<int64_t>(in);
    r.step = take<int64_t>(in);
    r.loss = take<double>(in);
    r.lr = take<double>(in);
  }
  return steps;
}

void write_steps_file(const fs::path& file, int64_t keep, const std::string& records) {
  if (keep < 0 || records.size() % step_record_bytes != 0)
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": refused to write " + std::to_string(records.size())
                       + " bytes of steps after record " + std::to_string(keep)
                       + " (records are " + std::to_string(step_record_bytes) + " bytes)");
  std::error_code ec;
  if (!file.parent_path().empty())
    fs::create_directories(file.parent_path(), ec); // as write_file_atomic does
  fd_guard f{::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)};
  if (f.fd < 0)
    steps_file_error(file, std::string("cannot open: ") + std::strerror(errno));
  const off_t size = ::lseek(f.fd, 0, SEEK_END);
  if (size < 0)
    steps_file_error(file, std::string("cannot seek: ") + std::strerror(errno));
  if (size == 0) {
    if (keep != 0)
      throw pnn::error(error_code::malformed_file,
                       file.string() + ": empty, a checkpoint needs its first "
                         + std::to_string(keep) + " steps");
    if (::write(f.fd, steps_header, steps_header_bytes)
        != static_cast<ssize_t>(steps_header_bytes))
      steps_file_error(file, std::string("cannot write: ") + std::strerror(errno));
  } else {
    char header[steps_header_bytes] = {};
    if (::pread(f.fd, header, steps_header_bytes, 0) != static_cast<ssize_t>(steps_header_bytes)
        || std::memcmp(header, steps_header, steps_header_bytes) != 0)
      throw pnn::error(error_code::malformed_file,
                       file.string() + ": not a steps file (expected the header PNNSTEP1)");
    const auto have = (size - static_cast<off_t>(steps_header_bytes))
      / static_cast<off_t>(step_record_bytes);
    if (have < keep)
      throw pnn::error(error_code::malformed_file,
                       file.string() + ": holds " + std::to_string(have)
                         + " steps, a checkpoint needs " + std::to_string(keep));
    if (have > keep) {
      // A run that branched from an older checkpoint: the records past `keep` belong
      // to checkpoints still on disk until the new one replaces them, so the file is
      // replaced whole (a crash keeps the old one) rather than cut in place.
      std::string bytes(steps_header_bytes + static_cast<size_t>(keep) * step_record_bytes, '\0');
      if (::pread(f.fd, bytes.data(), bytes.size(), 0) != static_cast<ssize_t>(bytes.size()))
        steps_file_error(file, std::string("cannot read: ") + std::strerror(errno));
      write_file_atomic(file, bytes + records);
      return;
    }
  }
  const off_t end = static_cast<off_t>(steps_header_bytes + keep * step_record_bytes);
  if (::ftruncate(f.fd, end) != 0 || ::lseek(f.fd, end, SEEK_SET) != end)
    steps_file_error(file, std::string("cannot truncate: ") + std::strerror(errno));
  size_t done = 0;
  while (done < records.size()) {
    const auto n = ::write(f.fd, records.data() + done, records.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      steps_file_error(file, std::string("cannot write: ") + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  if (::fsync(f.fd) != 0)
    steps_file_error(file, std::string("cannot sync: ") + std::strerror(errno));
}

std::string read_steps_file(const fs::path& file, int64_t count) {
  std::ifstream in(file, std::ios::binary);
  if (!in)
    throw pnn::error(error_code::file_not_found,
                     file.string() + ": not found (a checkpoint needs the steps.bin saved beside it; copy them together)");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < steps_header_bytes
      || bytes.compare(0, steps_header_bytes, steps_header) != 0)
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": not a steps file (expected the header PNNSTEP1)");
  const auto have = static_cast<int64_t>((bytes.size() - steps_header_bytes) / step_record_bytes);
  if (count < 0)
    count = have;
  if (have < count)
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": holds " + std::to_string(have) + " steps, the checkpoint needs "
                       + std::to_string(count));
  return bytes.substr(steps_header_bytes, static_cast<size_t>(count) * step_record_bytes);
}

} // namespace pnn::training
