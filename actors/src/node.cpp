#include <pnn/actors/node.hpp>

#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/training/dataset.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <map>
#include <set>

namespace pnn {

struct node_state::impl {
  /// The workers spawned for each coordinator (by its metric sink).
  std::map<caf::actor_addr, std::vector<caf::actor>> workers;
  /// Every worker started and not yet ended.
  std::set<caf::actor_addr> spawned;
};

node_state::node_state() : d(std::make_unique<impl>()) {
}
node_state::~node_state() = default;

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self, node_options o) {
  // Workers are linked to the node so that they end with it; one that ends (its
  // coordinator went away) must not take the node, and the next coordinators, along.
  // (Its exit may arrive before or after the coordinator's down message.)
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    auto& d = *self->state.d;
    if (d.spawned.erase(msg.source) > 0) {
      for (auto& [sink, list] : d.workers)
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](const caf::actor& w) { return w.address() == msg.source; }),
                   list.end());
      return;
    }
    self->quit(msg.reason); // the node itself is asked to end (serve's shutdown)
  });
  self->set_down_handler([self](const caf::down_msg& msg) {
    // A coordinator went away: its workers are of no use any more.
    auto& d = *self->state.d;
    auto i = d.workers.find(msg.source);
    if (i == d.workers.end())
      return;
    for (auto& w : i->second)
      self->send_exit(w, caf::exit_reason::user_shutdown);
    d.workers.erase(i);
  });
  return {
    [=](status_atom) -> node_info {
      node_info info;
      info.host = o.host->get();
      info.slots = o.slots;
      info.cores = o.cores;
      for (const auto& ds : training::list_datasets(o.data_dir))
        if (ds.found)
          info.datasets.push_back(ds.name);
      return info;
    },
    [=](spawn_atom, caf::actor sink) -> std::vector<caf::actor> {
      std::vector<caf::actor> result;
      for (int32_t s = 0; s < o.slots; ++s) {
        worker_options wo;
        wo.slot = s;
        wo.host = o.host->get();
        wo.remote = true;
        wo.data_dir = o.data_dir;
        auto w = caf::actor_cast<caf::actor>(spawn_worker(self->system(), sink, wo));
        self->link_to(w);
        self->state.d->spawned.insert(w.address());
        result.push_back(w);
      }
      if (sink) {
        self->monitor(sink);
        auto& list = self->state.d->workers[sink.address()];
        list.insert(list.end(), result.begin(), result.end());
      }
      return result;
    },
  };
}

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
