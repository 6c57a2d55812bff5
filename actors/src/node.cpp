#include <pnn/actors/node.hpp>

#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/training/dataset.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace pnn {

namespace {

class node_state {
public:
  static inline const char* name = "pnn.node";
  using pointer = node_actor::stateful_pointer<node_state>;

  void init(pointer self, node_options options) {
    self_ = self;
    o_ = std::move(options);
  }
  node_info status() const;
  caf::result<std::vector<worker_actor>> spawn_workers(const event_sink_actor& sink);
  void worker_or_node_exit(const caf::exit_msg& msg);
  void coordinator_down(const caf::down_msg& msg);

private:
  pointer self_ = nullptr;
  node_options o_;
  /// The workers spawned for each coordinator (by its event sink).
  std::map<caf::actor_addr, std::vector<worker_actor>> workers_;
  /// Every worker started and not yet ended.
  std::set<caf::actor_addr> spawned_;
};

node_info node_state::status() const {
  node_info info;
  info.host = o_.host->get();
  info.slots = o_.slots;
  info.cores = o_.cores;
  for (const auto& ds : training::list_datasets(o_.data_dir))
    if (ds.found)
      info.datasets.push_back(ds.name);
  return info;
}

caf::result<std::vector<worker_actor>>
node_state::spawn_workers(const event_sink_actor& sink) {
  if (o_.max_workers > 0 && static_cast<int64_t>(spawned_.size()) + o_.slots > o_.max_workers)
    return caf::make_error(caf::sec::runtime_error,
                           "this host runs " + std::to_string(spawned_.size())
                             + " workers already, at most " + std::to_string(o_.max_workers)
                             + " (pnn-node serve --max-workers)");
  std::vector<worker_actor> result;
  for (int32_t s = 0; s < o_.slots; ++s) {
    worker_options wo;
    wo.slot = s;
    wo.host = o_.host->get();
    wo.remote = true;
    wo.data_dir = o_.data_dir;
    wo.limits = o_.limits;
    auto w = spawn_worker(self_->system(), sink, wo);
    self_->link_to(w);
    spawned_.insert(w.address());
    result.push_back(w);
  }
  if (sink) {
    self_->monitor(sink);
    auto& list = workers_[sink.address()];
    list.insert(list.end(), result.begin(), result.end());
  }
  return result;
}

/// Workers are linked to the node so that they end with it; one that ends (its
/// coordinator went away) must not take the node, and the next coordinators, along.
/// (Its exit may arrive before or after the coordinator's down message.)
void node_state::worker_or_node_exit(const caf::exit_msg& msg) {
  if (spawned_.erase(msg.source) > 0) {
    for (auto& [sink, list] : workers_)
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const worker_actor& w) { return w.address() == msg.source; }),
                 list.end());
    return;
  }
  self_->quit(msg.reason); // the node itself is asked to end (serve's shutdown)
}

/// A coordinator went away: its workers are of no use any more.
void node_state::coordinator_down(const caf::down_msg& msg) {
  auto i = workers_.find(msg.source);
  if (i == workers_.end())
    return;
  for (auto& w : i->second)
    self_->send_exit(w, caf::exit_reason::user_shutdown);
  workers_.erase(i);
}

node_actor::behavior_type node(node_state::pointer self, node_options options) {
  self->state.init(self, std::move(options));
  self->set_exit_handler(
    [self](const caf::exit_msg& msg) { self->state.worker_or_node_exit(msg); });
  self->set_down_handler([self](const caf::down_msg& msg) { self->state.coordinator_down(msg); });
  return {
    [self](status_atom) -> node_info { return self->state.status(); },
    [self](spawn_atom, const event_sink_actor& sink) -> caf::result<std::vector<worker_actor>> {
      return self->state.spawn_workers(sink);
    },
  };
}

} // namespace

node_actor spawn_node(caf::actor_system& sys, node_options options) {
  return sys.spawn(node, std::move(options));
}

std::pair<std::string, uint16_t> parse_host_port(const std::string& text, const std::string& flag) {
  auto colon = text.rfind(':');
  auto fail = [&] {
    throw pnn::error(error_code::invalid_argument,
                     flag + " " + text + ": expected host:port with a port of 1..65535");
  };
  if (colon == std::string::npos || colon == 0 || colon + 1 >= text.size())
    fail();
  auto port_text = text.substr(colon + 1);
  if (port_text.find_first_not_of("0123456789") != std::string::npos || port_text.size() > 5)
    fail();
  auto port = std::stoul(port_text);
  if (port < 1 || port > 65535)
    fail();
  return {text.substr(0, colon), static_cast<uint16_t>(port)};
}

} // namespace pnn
