#include <pnn/actors/host_watcher.hpp>

#include <pnn/error.hpp>
#include <pnn/metrics.hpp>
#include <pnn/system.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

namespace pnn {

namespace {

/// The watcher's timer: time for the next look (to itself).
using look_atom = caf::atom_constant<caf::atom("look")>;

/// The watcher as it sees itself: its public interface plus its timer.
using watcher_impl = host_watcher_actor::extend<caf::reacts_to<look_atom>>;

class watcher_state {
public:
  static inline const char* name = "pnn.host_watcher";
  using pointer = watcher_impl::stateful_pointer<watcher_state>;

  void init(pointer self, Cluster& cluster, dispatcher_actor dispatcher, event_sink_actor sink,
            host_watcher_options options) {
    self_ = self;
    cluster_ = &cluster;
    dispatcher_ = std::move(dispatcher);
    sink_ = std::move(sink);
    o_ = std::move(options);
    for (auto& [address, w] : o_.initial)
      watch(address, w);
    o_.initial.clear();
  }

  void look();
  void worker_down(const caf::down_msg& msg);
  std::vector<host_join> stop() {
    stopped_ = true;
    self_->quit();
    return joined_;
  }

private:
  void watch(const std::string& address, const worker_actor& w) {
    self_->monitor(w);
    owner_[w.address()] = address;
    ++live_[address];
    count_alive();
  }
  /// Hosts with a live worker, for --metrics-port.
  void count_alive() const {
    metrics().hosts_alive = std::count_if(live_.begin(), live_.end(),
                                          [](const auto& host) { return host.second > 0; });
  }
  void connect(const wanted_host& host);
  void say(const std::string& what) {
    if (o_.log)
      o_.log(what);
  }

  pointer self_ = nullptr;
  Cluster* cluster_ = nullptr;
  dispatcher_actor dispatcher_;
  event_sink_actor sink_;
  host_watcher_options o_;
  std::map<caf::actor_addr, std::string> owner_;
  std::map<std::string, int> live_;
  std::set<std::string> unreachable_;
  std::vector<host_join> joined_;
  bool stopped_ = false;
};

void watcher_state::look() {
  if (stopped_)
    return;
  for (const auto& host : o_.wanted())
    if (live_[host.address] == 0)
      connect(host);
  const auto interval = std::chrono::milliseconds(static_cast<int64_t>(o_.interval * 1000));
  self_->delayed_send(self_, interval, look_atom::value);
}

void watcher_state::connect(const wanted_host& host) {
  try {
    const auto& node = cluster_->connect(host.address, host.label);
    auto workers = cluster_->spawn_workers(node, sink_);
    for (const auto& w : workers) {
      watch(host.address, w);
      self_->send(dispatcher_, add_atom::value, w);
    }
    unreachable_.erase(host.address);
    say("host " + host.address + " joined with " + std::to_string(workers.size()) + " slot(s)");
    joined_.push_back(
      {host.address, pnn::wall_clock_seconds() - o_.t0, static_cast<int32_t>(workers.size())});
  } catch (const pnn::error& e) {
    if (unreachable_.insert(host.address).second) {
      char interval[32];
      std::snprintf(interval, sizeof interval, "%g", o_.interval);
      say(std::string(e.what()) + " (retrying every " + interval + " s)");
    }
  }
}

void watcher_state::worker_down(const caf::down_msg& msg) {
  auto i = owner_.find(msg.source);
  if (i == owner_.end())
    return;
  if (--live_[i->second] == 0)
    say("host " + i->second + " lost; will take it back when it answers");
  owner_.erase(i);
  count_alive();
}

watcher_impl::behavior_type host_watcher(watcher_state::pointer self, Cluster* cluster,
                                         dispatcher_actor dispatcher, event_sink_actor sink,
                                         host_watcher_options options) {
  self->state.init(self, *cluster, std::move(dispatcher), std::move(sink), std::move(options));
  self->set_down_handler([self](const caf::down_msg& msg) { self->state.worker_down(msg); });
  self->send(self, look_atom::value); // the first look is at once
  return {
    [self](look_atom) { self->state.look(); },
    [self](done_atom) -> std::vector<host_join> { return self->state.stop(); },
  };
}

} // namespace

host_watcher_actor spawn_host_watcher(caf::actor_system& sys, Cluster& cluster,
                                      dispatcher_actor dispatcher, event_sink_actor sink,
                                      host_watcher_options options) {
  return sys.spawn<caf::detached>(host_watcher, &cluster, std::move(dispatcher), std::move(sink),
                                  std::move(options));
}

} // namespace pnn
