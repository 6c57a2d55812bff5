#pragma once

#include <functional>

namespace pnn {

/// Ctrl-C for a long run: while an interrupt_watch lives, the first SIGINT or
/// SIGTERM calls `on_first` (on a thread of the watch's own, never inside the signal
/// handler: it may send messages, take locks, print) and the run winds down in
/// order, saving what it has; a second SIGINT or SIGTERM ends the process at once
/// with exit code 130. When the watch ends, the signals' earlier handlers return.
/// One watch at a time per process.
class interrupt_watch {
public:
  explicit interrupt_watch(std::function<void()> on_first);
  ~interrupt_watch();
  interrupt_watch(const interrupt_watch&) = delete;
  interrupt_watch& operator=(const interrupt_watch&) = delete;

  /// Whether the first signal came.
  bool fired() const;

private:
  struct impl;
  impl* d_;
};

/// Exit code of a run that was interrupted (128 + SIGINT, as shells report it).
constexpr int interrupted_exit_code = 130;

} // namespace pnn
