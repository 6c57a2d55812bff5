#include <pnn/training/progress.hpp>

#include <pnn/error.hpp>

#include <unistd.h>

namespace pnn::training {

progress_line::progress_line(mode m, std::FILE* out, std::chrono::seconds plain_interval)
  : mode_(m), out_(out), interval_(plain_interval) {
  tty_ = m == mode::automatic && ::isatty(::fileno(out)) == 1;
  if (tty_)
    interval_ = std::chrono::milliseconds{100};
}

progress_line::mode progress_line::parse_mode(const std::string& text) {
  if (text == "auto")
    return mode::automatic;
  if (text == "plain")
    return mode::plain;
  if (text == "none")
    return mode::none;
  throw pnn::error(error_code::invalid_argument,
                   "--progress " + text + ": expected auto, plain or none");
}

void progress_line::update(const std::string& text, bool force) {
  if (mode_ == mode::none)
    return;
  auto now = std::chrono::steady_clock::now();
  if (!force && last_.time_since_epoch().count() != 0 && now - last_ < interval_)
    return;
  last_ = now;
  if (tty_) {
    std::fprintf(out_, "\r\033[K%s", text.c_str());
    open_ = true;
  } else {
    std::fprintf(out_, "%s\n", text.c_str());
  }
  std::fflush(out_);
}

void progress_line::finish() {
  if (open_) {
    std::fputc('\n', out_);
    std::fflush(out_);
    open_ = false;
  }
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0))
    return "?";
  auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

} // namespace pnn::training
