#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace pnn::training {

/// One progress line for a running job: rewritten in place on a terminal, printed
/// as plain lines (at most every `plain_interval`) when output is piped.
class progress_line {
public:
  enum class mode { automatic, plain, none };

  explicit progress_line(mode m, std::FILE* out = stdout,
                         std::chrono::seconds plain_interval = std::chrono::seconds{5});

  /// Parses "auto", "plain" or "none"; throws pnn::error otherwise.
  static mode parse_mode(const std::string& text);

  /// Shows `text`; on a terminal at most ~10 times a second, when piped at most
  /// every plain_interval unless `force`.
  void update(const std::string& text, bool force = false);

  /// Ends the in-place line so that normal output can follow.
  void finish();

private:
  bool tty_ = false;
  mode mode_;
  std::FILE* out_;
  std::chrono::steady_clock::duration interval_;
  std::chrono::steady_clock::time_point last_{};
  bool open_ = false;
};

/// "1m05s", "42s", "1h02m".
std::string format_duration(double seconds);

} // namespace pnn::training
