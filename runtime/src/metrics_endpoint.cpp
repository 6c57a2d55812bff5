#include <pnn/runtime/metrics_endpoint.hpp>

#include <pnn/error.hpp>
#include <pnn/metrics.hpp>

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

namespace pnn::runtime {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

/// A new family at the end of `out`.
MetricFamily& family(std::vector<MetricFamily>& out, const char* name, const char* help,
                     MetricType type) {
  auto& f = out.emplace_back();
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void add(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// Reads pnn::metrics() when scraped. Samples per second: over the time since the
/// previous scrape (Prometheus' rate() over pnn_samples_trained_total does the same
/// over any window).
class process_collectable {
public:
  explicit process_collectable(std::string command)
    : command_(std::move(command)), last_time_(steady_seconds()),
      last_samples_(metrics().samples_trained.load()) {}

  std::vector<MetricFamily> Collect() const {
    const auto& m = metrics();
    std::vector<MetricFamily> out;
    using T = MetricType;
    auto n = [](const auto& atomic) { return static_cast<double>(atomic.load()); };
    add(family(out, "pnn_info", "what this process runs", T::Gauge), 1, {{"command", command_}});
    auto& jobs =
      family(out, "pnn_jobs", "the coordinator's jobs by state (the K-fold queue)", T::Gauge);
    add(jobs, n(m.jobs_queued), {{"state", "queued"}});
    add(jobs, n(m.jobs_running), {{"state", "running"}});
    add(jobs, n(m.jobs_paused), {{"state", "paused"}});
    add(jobs, n(m.jobs_done), {{"state", "done"}});
    add(jobs, n(m.jobs_failed), {{"state", "failed"}});
    add(family(out, "pnn_workers_busy", "training workers in this process with a job", T::Gauge),
        n(m.workers_busy));
    auto& ended =
      family(out, "pnn_worker_jobs_total", "jobs this process's workers ended", T::Counter);
    add(ended, n(m.worker_jobs_ok), {{"outcome", "ok"}});
    add(ended, n(m.worker_jobs_failed), {{"outcome", "failed"}});
    const uint64_t samples = m.samples_trained.load();
    add(family(out, "pnn_samples_trained_total", "samples trained by this process's workers",
               T::Counter),
        static_cast<double>(samples));
    add(family(out, "pnn_samples_per_second",
               "samples trained per second since the previous scrape", T::Gauge),
        samples_per_second(samples));
    add(family(out, "pnn_holder_updates_total",
               "updates the parameter holder shards in this process applied", T::Counter),
        n(m.holder_updates));
    add(family(out, "pnn_holder_rejections_total",
               "pushes the parameter holder shards in this process refused", T::Counter),
        n(m.holder_rejections));
    add(family(out, "pnn_holder_pulls_total", "pulls the holder shards in this process answered",
               T::Counter),
        n(m.holder_pulls));
    add(family(out, "pnn_hosts_alive", "serve hosts with live workers of this coordinator",
               T::Gauge),
        n(m.hosts_alive));
    add(family(out, "pnn_coordinators", "coordinators a serve node works for", T::Gauge),
        n(m.coordinators));
    return out;
  }

private:
  double samples_per_second(uint64_t samples) const {
    std::lock_guard<std::mutex> guard{mutex_};
    const double now = steady_seconds();
    if (now - last_time_ >= 0.5) {
      last_rate_ = static_cast<double>(samples - last_samples_) / (now - last_time_);
      last_time_ = now;
      last_samples_ = samples;
    }
    return last_rate_;
  }

  std::string command_;
  mutable std::mutex mutex_;
  mutable double last_time_;
  mutable uint64_t last_samples_;
  mutable double last_rate_ = 0;
};

} // namespace

/// The HTTP side: one thread, one connection at a time (a scrape is a few KB), on a
/// socket of our own. prometheus-cpp's own exposer (civetweb) could not start its
/// threads inside pnn-node ("Cannot create threads"), so only its text serializer is
/// used. A request gets its answer and the connection closes (HTTP/1.0 style).
struct metrics_endpoint::impl {
  int listener = -1;
  uint16_t port = 0;
  std::atomic<bool> stop{false};
  std::thread thread;
  std::unique_ptr<process_collectable> collectable;

  void serve() {
    // SIGINT and SIGTERM are the command's (Ctrl-C saves the run), never this thread's.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    while (!stop.load()) {
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0)
        continue;
      const int client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0)
        continue;
      answer(client);
      ::close(client);
    }
  }

  /// Waits until `client` can be read (`events` POLLIN) or written (POLLOUT) before
  /// the request's deadline, and while the endpoint is not stopping.
  bool ready(int client, short events, std::chrono::steady_clock::time_point deadline) const {
    while (!stop.load()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
      if (left <= 0)
        return false;
      pollfd p{client, events, 0};
      const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200)));
      if (n > 0)
        return true;
      if (n < 0 && errno != EINTR)
        return false;
    }
    return false;
  }

  void answer(int client) const {
    // One deadline for the whole exchange: a client that trickles bytes does not
    // hold the thread (nor the command's end, which joins it).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    std::string request;
    char buf[1024];
    while (request.size() < 8192 && request.find("\r\n\r\n") == std::string::npos
           && request.find("\n\n") == std::string::npos) {
      if (!ready(client, POLLIN, deadline))
        return;
      const auto n = ::recv(client, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
        break;
      if (n > 0)
        request.append(buf, static_cast<size_t>(n));
    }
    const auto line = request.substr(0, request.find_first_of("\r\n"));
    std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
    const bool get = line.rfind("GET ", 0) == 0, head = line.rfind("HEAD ", 0) == 0;
    const auto path = line.substr(line.find(' ') + 1, line.rfind(' ') - line.find(' ') - 1);
    if (!get && !head) {
      status = "405 Method Not Allowed";
      type = "text/plain";
      body = "only GET /metrics\n";
    } else if (path != "/metrics" && path.rfind("/metrics?", 0) != 0) {
      status = "404 Not Found";
      type = "text/plain";
      body = "metrics are at /metrics\n";
    } else {
      std::ostringstream text;
      prometheus::TextSerializer{}.Serialize(text, collectable->Collect());
      body = text.str();
    }
    std::string response = "HTTP/1.0 " + status + "\r\nContent-Type: " + type
      + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (!head)
      response += body;
    for (size_t sent = 0; sent < response.size();) {
      if (!ready(client, POLLOUT, deadline))
        return;
      const auto n = ::send(client, response.data() + sent, response.size() - sent,
                            MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        continue;
      if (n <= 0)
        return;
      sent += static_cast<size_t>(n);
    }
  }
};

metrics_endpoint::metrics_endpoint(const std::string& command, const std::string& address,
                                   uint16_t port)
  : d_(std::make_unique<impl>()) {
  const std::string where = address + ":" + std::to_string(port);
  auto fail = [&](const std::string& why) {
    if (d_->listener >= 0)
      ::close(d_->listener);
    throw pnn::error(error_code::invalid_argument, "--metrics-port " + std::to_string(port)
                                                     + ": cannot listen on " + where + " ("
                                                     + why + ")");
  };
  sockaddr_in sa{};
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(address.c_str(), nullptr, &hints, &found) != 0 || found == nullptr)
    fail("expected an IPv4 address or a host name with one");
  sa = *reinterpret_cast<const sockaddr_in*>(found->ai_addr);
  ::freeaddrinfo(found);
  sa.sin_port = htons(port);
  d_->listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (d_->listener < 0)
    fail(std::strerror(errno));
  const int yes = 1;
  ::setsockopt(d_->listener, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  if (::bind(d_->listener, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0
      || ::listen(d_->listener, 16) != 0)
    fail(std::strerror(errno));
  socklen_t len = sizeof sa;
  ::getsockname(d_->listener, reinterpret_cast<sockaddr*>(&sa), &len);
  d_->port = ntohs(sa.sin_port);
  d_->collectable = std::make_unique<process_collectable>(command);
  d_->thread = std::thread([this] { d_->serve(); });
}

metrics_endpoint::~metrics_endpoint() {
  d_->stop = true;
  if (d_->thread.joinable())
    d_->thread.join();
  ::close(d_->listener);
}

uint16_t metrics_endpoint::port() const {
  return d_->port;
}

} // namespace pnn::runtime
