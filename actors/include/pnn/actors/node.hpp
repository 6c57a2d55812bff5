#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>

#include <caf/actor_system.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pnn {

class bulk_server;

// The node: one per host, published on a port by `pnn-node serve` (node_actor in
// protocol.hpp); the entry point a coordinator reaches on a remote host. It says
// what the host offers and starts workers there for a coordinator, which end when
// that coordinator's sink goes away or the node shuts down.

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
  /// What its workers take from a coordinator (threads capped at `cores` by serve).
  peer_limits limits;
  /// Workers alive at once, over all coordinators (0: no cap): a spawn request
  /// beyond it is refused. A coordinator that reconnects while its old workers
  /// wind down needs room for a second set (serve's default: 4 x slots).
  int32_t max_workers = 0;
  /// Where holder shards asked for with holder_spec::bulk serve their pulls and
  /// pushes beside CAF (bulk_wire.hpp); none: only through their actors.
  std::shared_ptr<bulk_server> bulk;
};

/// Spawns a node.
node_actor spawn_node(caf::actor_system& sys, node_options options);

/// "host:port" split into its parts; throws pnn::error naming `flag` and `text`
/// unless the port is 1..65535 and the host non-empty.
std::pair<std::string, uint16_t> parse_host_port(const std::string& text, const std::string& flag);

} // namespace pnn
