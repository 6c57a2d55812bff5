#include <pnn/actors/node.hpp>

#include <pnn/actors/parameter_holder.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/metrics.hpp>
#include <pnn/training/dataset.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace pnn {

namespace {

/// A byte count as people read it: "740 KB", "9.2 MB".
std::string size_text(int64_t bytes) {
  char text[32];
  if (bytes < (int64_t{1} << 20))
    std::snprintf(text, sizeof text, "%lld KB", static_cast<long long>((bytes + 1023) >> 10));
  else
    std::snprintf(text, sizeof text, "%.1f MB", static_cast<double>(bytes) / (1 << 20));
  return text;
}

/// Removes `who` from every coordinator's list of actors.
template <class Handle>
void drop(std::map<caf::actor_addr, std::vector<Handle>>& lists, const caf::actor_addr& who) {
  for (auto& [owner, list] : lists)
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const Handle& h) { return h.address() == who; }),
               list.end());
}

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
  caf::result<holder_actor, bulk_endpoint> spawn_holder_shard(const holder_spec& spec,
                                                              const holder_home_actor& home);
  void worker_or_node_exit(const caf::exit_msg& msg);
  void coordinator_down(const caf::down_msg& msg);

private:
  void count_coordinators() const;
  pointer self_ = nullptr;
  node_options o_;
  /// The workers spawned for each coordinator (by its event sink).
  std::map<caf::actor_addr, std::vector<worker_actor>> workers_;
  /// Every worker started and not yet ended.
  std::set<caf::actor_addr> spawned_;
  /// Holder shards run for each coordinator (by its holder home), and the bytes
  /// each one counts against --max-holder-mb.
  std::map<caf::actor_addr, std::vector<holder_actor>> holders_;
  std::map<caf::actor_addr, int64_t> holder_bytes_;
  /// Workers and shards of a coordinator that went: no longer counted, but their
  /// exit may still come (and must not be taken for the node's own).
  std::set<caf::actor_addr> released_;
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
    count_coordinators();
  }
  return result;
}

/// A holder shard for the coordinator of `home`: it saves by sending its
/// checkpoints there, and ends with the node or when that coordinator goes.
caf::result<holder_actor, bulk_endpoint>
node_state::spawn_holder_shard(const holder_spec& spec, const holder_home_actor& home) {
  if (!home)
    return caf::make_error(caf::sec::runtime_error, "a holder shard needs a home to save to");
  // Its values, their optimizer moments (two for Adam) or the state it starts
  // from, and 64 KB for the actor itself (many tiny shards are not free).
  const auto values = static_cast<int64_t>(spec.initial.bytes.size());
  const int64_t moments = spec.optimizer.empty() ? 0 : 2 * values;
  const int64_t bytes = values + std::max(moments, static_cast<int64_t>(spec.optimizer_state.size()))
    + (int64_t{64} << 10);
  int64_t held = 0;
  for (const auto& [addr, n] : holder_bytes_)
    held += n;
  const auto cap = o_.limits.max_holder_bytes;
  if (cap > 0 && held + bytes > cap)
    return caf::make_error(caf::sec::runtime_error,
                           "a holder shard of " + size_text(bytes) + " with " + size_text(held)
                             + " held here is over this host's " + size_text(cap)
                             + " (pnn-node serve --max-holder-mb)");
  holder_actor h;
  bulk_endpoint served; // the coordinator knows this host's address
  try {
    auto options = holder_options_from(spec);
    if (options.checkpoint_every > 0)
      options.save = [home, shard = spec.shard](const param_blob& p, const std::string& state) {
        caf::anon_send(home, checkpoint_atom::value, shard, p, state);
      };
    const bool bulk = spec.bulk && o_.bulk && spec.sync_members == 0;
    h = spawn_holder(self_->system(), spec.initial, std::move(options),
                     bulk ? o_.bulk : nullptr, bulk ? &served : nullptr);
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::runtime_error, e.what());
  }
  self_->link_to(h);
  holder_bytes_[h.address()] = bytes;
  self_->monitor(home);
  holders_[home.address()].push_back(h);
  count_coordinators();
  return {h, served};
}

/// Workers are linked to the node so that they end with it; one that ends (its
/// coordinator went away) must not take the node, and the next coordinators, along.
/// (Its exit may arrive before or after the coordinator's down message.)
void node_state::worker_or_node_exit(const caf::exit_msg& msg) {
  if (released_.erase(msg.source) > 0)
    return;
  if (holder_bytes_.erase(msg.source) > 0) {
    drop(holders_, msg.source);
    return;
  }
  if (spawned_.erase(msg.source) > 0) {
    drop(workers_, msg.source);
    return;
  }
  self_->quit(msg.reason); // the node itself is asked to end (serve's shutdown)
}

/// A coordinator went away: its workers and holder shards are of no use any more.
/// They no longer count against this host's limits now: an actor that gets an exit
/// message from an actor it is linked to drops the link before it ends, so no exit
/// message comes back from those ended here (one ended by its coordinator first
/// still sends one: released_).
void node_state::coordinator_down(const caf::down_msg& msg) {
  if (auto h = holders_.find(msg.source); h != holders_.end()) {
    for (auto& holder : h->second) {
      self_->send_exit(holder, caf::exit_reason::user_shutdown);
      if (holder_bytes_.erase(holder.address()) > 0)
        released_.insert(holder.address());
    }
    holders_.erase(h);
  }
  auto i = workers_.find(msg.source);
  if (i != workers_.end()) {
    for (auto& w : i->second) {
      self_->send_exit(w, caf::exit_reason::user_shutdown);
      if (spawned_.erase(w.address()) > 0)
        released_.insert(w.address());
    }
    workers_.erase(i);
  }
  count_coordinators();
}

/// Coordinators (processes) this node runs workers or holder shards for, for
/// --metrics-port.
void node_state::count_coordinators() const {
  std::set<caf::node_id> nodes;
  for (const auto& [sink, list] : workers_)
    nodes.insert(sink.node());
  for (const auto& [home, list] : holders_)
    nodes.insert(home.node());
  metrics().coordinators = static_cast<int64_t>(nodes.size());
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
    [self](spawn_atom, const holder_spec& spec,
           const holder_home_actor& home) -> caf::result<holder_actor, bulk_endpoint> {
      return self->state.spawn_holder_shard(spec, home);
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
