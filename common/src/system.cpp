#include <pnn/system.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <condition_variable>

#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>

namespace pnn {

void configure_allocator() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") == nullptr)
    mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
  if (std::getenv("MALLOC_TRIM_THRESHOLD_") == nullptr)
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  // glibc deletes a thread arena's heap once it is empty unless the top pad covers it.
  if (std::getenv("MALLOC_TOP_PAD_") == nullptr)
    mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

double wall_clock_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0)
      return n;
  }
  auto n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

cpu_times process_cpu_times() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return {secs(u.ru_utime), secs(u.ru_stime)};
}

long long peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<long long>(u.ru_maxrss) * 1024;
}

namespace {

bool read_proc_stat(unsigned long long& busy, unsigned long long& total) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                     steal = 0;
  if (!(in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal)
      || cpu != "cpu")
    return false;
  busy = user + nice + system + irq + softirq + steal;
  total = busy + idle + iowait;
  return true;
}

double process_seconds() {
  auto t = process_cpu_times();
  return t.user_seconds + t.system_seconds;
}

} // namespace

cpu_sampler::cpu_sampler() : start_(std::chrono::steady_clock::now()), last_time_(start_) {
  read_proc_stat(last_busy_, last_total_);
  last_proc_ = process_seconds();
}

bool cpu_sampler::sample(cpu_sample& s) {
  unsigned long long busy = 0, total = 0;
  if (!read_proc_stat(busy, total) || total <= last_total_)
    return false;
  auto now = std::chrono::steady_clock::now();
  double proc = process_seconds();
  s.time = std::chrono::duration<double>(now - start_).count();
  s.utilization = static_cast<double>(busy - last_busy_) / static_cast<double>(total - last_total_);
  double dt = std::chrono::duration<double>(now - last_time_).count();
  s.process_cores = dt > 0 ? (proc - last_proc_) / dt : 0;
  last_busy_ = busy;
  last_total_ = total;
  last_proc_ = proc;
  last_time_ = now;
  return true;
}

std::string cpu_csv(const std::vector<cpu_sample>& samples) {
  std::ostringstream out;
  out << "time,utilization,process_cores\n";
  char buf[96];
  for (const auto& s : samples) {
    std::snprintf(buf, sizeof buf, "%.3f,%.4f,%.4f\n", s.time, s.utilization, s.process_cores);
    out << buf;
  }
  return out.str();
}

cpu_monitor::cpu_monitor(std::chrono::milliseconds interval) : interval_(interval) {
  thread_ = std::thread([this] {
    auto next = std::chrono::steady_clock::now() + interval_;
    while (!stop_.load()) {
      // Sleep in short pieces so stop() returns quickly.
      while (!stop_.load() && std::chrono::steady_clock::now() < next)
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
      if (stop_.load())
        break;
      sample();
      next += interval_;
    }
  });
}

cpu_monitor::~cpu_monitor() {
  stop();
}

void cpu_monitor::sample() {
  std::lock_guard<std::mutex> guard{mtx_};
  cpu_sample s;
  if (sampler_.sample(s))
    samples_.push_back(s);
}

void cpu_monitor::stop() {
  if (stop_.exchange(true))
    return;
  if (thread_.joinable())
    thread_.join();
  sample();
}

std::vector<cpu_sample> cpu_monitor::samples() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return samples_;
}

double cpu_monitor::mean_utilization() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (samples_.empty())
    return 0;
  double sum = 0;
  for (const auto& s : samples_)
    sum += s.utilization;
  return sum / static_cast<double>(samples_.size());
}

std::string cpu_monitor::csv() const {
  return cpu_csv(samples());
}

} // namespace pnn
