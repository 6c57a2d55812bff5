#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/typed_actor.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pnn {

/// One per host, published on a port by `pnn-node serve`: the entry point a
/// coordinator reaches on a remote host (DESIGN.md).
using node_actor = caf::typed_actor<
  /// What this host offers: its name, slots, cores and datasets found.
  caf::replies_to<status_atom>::with<node_info>,
  /// Spawns one training worker per slot for the coordinator whose metric sink is
  /// given (progress goes there) and answers their handles (worker_actor
  /// interface). The workers run remote jobs: their record files come back in
  /// the results. They end when the sink's node goes away or the node shuts down.
  caf::replies_to<spawn_atom, caf::actor>::with<std::vector<caf::actor>>>;

/// The host's name as results show it ("hostname:port"), set once the port is
/// known (a published port 0 is chosen by the OS).
class host_label {
public:
  void set(std::string value) {
    std::lock_guard<std::mutex> guard{mtx_};
    value_ = std::move(value);
  }
  std::string get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return value_;
  }

private:
  mutable std::mutex mtx_;
  std::string value_;
};

struct node_options {
  std::shared_ptr<host_label> host = std::make_shared<host_label>();
  int32_t slots = 1;
  int32_t cores = 1;
  std::string data_dir; ///< where this host's datasets are ("" : their default folders)
};

struct node_state {
  struct impl;
  std::unique_ptr<impl> d;
  node_state();
  ~node_state();
  static inline const char* name = "pnn.node";
};

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self, node_options options);

node_actor spawn_node(caf::actor_system& sys, node_options options);

/// "host:port" split into its parts; throws pnn::error naming `flag` and `text`
/// unless the port is 1..65535 and the host non-empty.
std::pair<std::string, uint16_t> parse_host_port(const std::string& text, const std::string& flag);

} // namespace pnn
