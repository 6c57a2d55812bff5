#include <pnn/interrupt.hpp>

#include <pnn/error.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <thread>

#include <unistd.h>

namespace pnn {

namespace {

std::atomic<int> signals_seen{0};
int wake_fd = -1; ///< the pipe's write end, for the handler (async-signal-safe write)

extern "C" void on_signal(int) {
  if (signals_seen.fetch_add(1) >= 1)
    ::_exit(interrupted_exit_code); // the second one: at once
  const char byte = 's';
  [[maybe_unused]] auto n = ::write(wake_fd, &byte, 1);
}

} // namespace

struct interrupt_watch::impl {
  std::function<void()> on_first;
  int fds[2] = {-1, -1};
  struct sigaction old_int {};
  struct sigaction old_term {};
  std::thread waiter;
};

interrupt_watch::interrupt_watch(std::function<void()> on_first) : d_(new impl) {
  d_->on_first = std::move(on_first);
  if (::pipe(d_->fds) != 0) {
    delete d_;
    throw pnn::error(error_code::io_error,
                     std::string{"cannot watch for interrupts: "} + std::strerror(errno));
  }
  signals_seen = 0;
  wake_fd = d_->fds[1];
  d_->waiter = std::thread([d = d_] {
    char byte = 0;
    while (true) {
      auto n = ::read(d->fds[0], &byte, 1);
      if (n < 0 && errno == EINTR)
        continue;
      break;
    }
    if (byte == 's' && d->on_first)
      d->on_first();
  });
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &d_->old_int);
  ::sigaction(SIGTERM, &sa, &d_->old_term);
}

interrupt_watch::~interrupt_watch() {
  ::sigaction(SIGINT, &d_->old_int, nullptr);
  ::sigaction(SIGTERM, &d_->old_term, nullptr);
  if (signals_seen.load() == 0) {
    const char byte = 'q'; // no signal came: the waiter ends without calling back
    [[maybe_unused]] auto n = ::write(d_->fds[1], &byte, 1);
  }
  d_->waiter.join();
  wake_fd = -1;
  ::close(d_->fds[0]);
  ::close(d_->fds[1]);
  delete d_;
}

bool interrupt_watch::fired() const {
  return signals_seen.load() > 0;
}

} // namespace pnn
