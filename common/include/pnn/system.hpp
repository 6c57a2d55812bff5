#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pnn {

/// Keeps glibc malloc from returning large tensor buffers to the kernel after every
/// step (see DESIGN.md: without this, parallel jobs spend seconds of system time in
/// page faults): mmap threshold 64 MiB and trim threshold 1 GiB (the main arena), and
/// top pad 64 MiB: a worker thread's arena otherwise unmaps a whole 64 MiB heap as
/// soon as it is empty and faults it back in on the next step (VGG11 HOGWILD with 2
/// workers: 142 -> 213 samples/s, system time 3.3 -> 1.8 s). Call once at start-up,
/// before threads start. Environment variables MALLOC_MMAP_THRESHOLD_ /
/// MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ set by the user win.
void configure_allocator();

/// Wall-clock time in seconds since the Unix epoch (comparable across processes).
double wall_clock_seconds();

/// Number of cores this process may run on.
int available_cores();

/// CPU time of this process so far.
struct cpu_times {
  double user_seconds = 0;
  double system_seconds = 0;
};
cpu_times process_cpu_times();

/// Peak resident set size of this process, in bytes.
long long peak_rss_bytes();

/// One sample of machine-wide CPU utilisation.
struct cpu_sample {
  double time = 0;          ///< seconds since the monitor started
  double utilization = 0;   ///< busy fraction of all cores over the interval, 0..1
  double process_cores = 0; ///< cores' worth of CPU this process used in the interval
};

/// Reads /proc/stat and this process's CPU time; each sample() covers the time
/// since the previous one (or since construction).
class cpu_sampler {
public:
  cpu_sampler();
  /// A sample since the last call; false when /proc/stat is unreadable or no time passed.
  bool sample(cpu_sample& out);

private:
  std::chrono::steady_clock::time_point start_, last_time_;
  unsigned long long last_busy_ = 0, last_total_ = 0;
  double last_proc_ = 0;
};

/// CSV of samples: time,utilization,process_cores.
std::string cpu_csv(const std::vector<cpu_sample>& samples);

/// Samples /proc/stat on its own thread every `interval` until stopped.
class cpu_monitor {
public:
  explicit cpu_monitor(std::chrono::milliseconds interval = std::chrono::milliseconds{500});
  ~cpu_monitor();
  cpu_monitor(const cpu_monitor&) = delete;
  cpu_monitor& operator=(const cpu_monitor&) = delete;

  /// Stops sampling (takes a last sample first); idempotent.
  void stop();
  std::vector<cpu_sample> samples() const;
  /// Mean utilisation over all samples, 0 when there are none.
  double mean_utilization() const;
  /// The samples as CSV: time,utilization,process_cores.
  std::string csv() const;

private:
  void sample();
  std::chrono::milliseconds interval_;
  mutable std::mutex mtx_;
  cpu_sampler sampler_;
  std::vector<cpu_sample> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

} // namespace pnn
