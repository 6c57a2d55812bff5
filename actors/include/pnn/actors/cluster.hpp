#pragma once

#include <pnn/actors/node.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>

#include <caf/actor_system.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pnn::models {
class Network;
}

namespace pnn {

/// A host reached by a Cluster: its address, its node actor and what it offers.
struct remote_node {
  std::string address; ///< "host:port" as given
  std::string label;   ///< what named it, starts error messages ("--hosts")
  node_actor handle;
  node_info info;
};

/// The hosts of a run, seen from the coordinator: connects to `pnn-node serve`
/// processes through CAF's middleman and starts training workers on them (and on
/// this host). Every worker it started is ended when the Cluster is destroyed (or
/// on shutdown()), so the actor system can stop.
///
///   caf::actor_system_config cfg;
///   pnn::configure_actor_system(cfg, 2);
///   cfg.load<caf::io::middleman>();
///   caf::actor_system sys{cfg};
///   pnn::Cluster cluster{sys};
///   auto& a = cluster.connect("127.0.0.1:7001");   // a node: a.info.slots, a.info.host
///   auto workers = cluster.spawn_workers(a, sink); // one per slot of that host
class Cluster {
public:
  /// `sys` must have loaded caf::io::middleman to connect to other hosts.
  /// `timeout`: seconds to wait for a node's answers; `label` starts every error
  /// message about a host ("host", or the flag that named it, "--hosts").
  explicit Cluster(caf::actor_system& sys, double timeout = 10, std::string label = "host");
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Connects to the node published at `host_port` and asks what it offers.
  /// Throws pnn::error(invalid_argument) naming the address when it cannot be
  /// reached or does not answer. Connecting again to a known address (a host that
  /// came back) replaces its entry. Not thread-safe: one thread uses a Cluster.
  /// `label` replaces the Cluster's label in messages about this host (for a host
  /// named somewhere else, "--hosts-file hosts.txt").
  const remote_node& connect(const std::string& host_port, const std::string& label = {});

  /// Starts one worker per slot on `node` for this coordinator; their progress
  /// events go to `sink`. Throws pnn::error naming the node when it refuses.
  std::vector<worker_actor> spawn_workers(const remote_node& node, event_sink_actor sink);

  /// Starts a parameter holder shard on `node` (sgd --holder-hosts); its checkpoints
  /// go to `home`. Throws pnn::error naming the node when it refuses. With
  /// spec.bulk, `endpoint` gets the node's bulk port for it, at the host this
  /// process reached the node at (port 0: the node has none).
  holder_actor spawn_holder(const remote_node& node, const holder_spec& spec,
                            holder_home_actor home, bulk_endpoint* endpoint = nullptr);

  /// Starts `n` workers on this host (slots numbered from `base.slot`).
  std::vector<worker_actor> spawn_local_workers(int32_t n, event_sink_actor sink,
                                                worker_options base = {});

  const std::vector<remote_node>& nodes() const {
    return nodes_;
  }
  caf::actor_system& system() {
    return sys_;
  }

  /// Ends every worker started through this Cluster.
  void shutdown();

private:
  caf::actor_system& sys_;
  double timeout_;
  std::string label_;
  std::vector<remote_node> nodes_; // reserved: references stay valid
  std::vector<worker_actor> workers_;
};

/// shard_bounds for `model`'s parameter tensors.
std::vector<uint64_t> shard_bounds(const models::Network& model, size_t shards);

/// A parameter holder (holder_actor) for one model, seen from code: spawn it from
/// a model's parameters, hand its handle to SGD workers, read its counters, copy its
/// parameters back into a model, or publish it for workers that connect by port.
///
/// Sharded (shards > 1): S holder actors, each over a slice of the flat parameters
/// (shard_bounds: byte-balanced, cut at tensor boundaries where that stays within a
/// quarter of a shard's share). Each shard is a whole holder over its values: its
/// own version, optimizer state (an element-wise optimizer over the slices is the
/// optimizer over the whole), checkpoints and counters; link() gives workers every
/// shard and they push and pull to all of them at once.
class ParameterHolder {
public:
  /// Holds `model`'s current parameters (version 0) in `shards` shards, each
  /// saving as `options` says (options.save gets each shard's slice). Throws
  /// pnn::error when a parameter is not finite or the shards do not fit.
  ParameterHolder(caf::actor_system& sys, const models::Network& model,
                  holder_options options = {}, size_t shards = 1);
  /// Holds `initial` (e.g. the parameters of an earlier run's checkpoint; its
  /// version goes on counting).
  ParameterHolder(caf::actor_system& sys, param_blob initial, holder_options options = {});
  /// Holds shard i of a model of layout `layout` from `initial[i]` (values
  /// [bounds[i], bounds[i+1]), of layout shard_layout(layout, ...)) with
  /// `options[i]`; one shard is a plain holder. Throws pnn::error when they do not fit.
  ParameterHolder(caf::actor_system& sys, uint64_t layout, std::vector<uint64_t> bounds,
                  std::vector<param_blob> initial, std::vector<holder_options> options);
  /// Takes over shards already running (here or on other hosts: Cluster::
  /// spawn_holder), shard i over values [bounds[i], bounds[i+1]) of a model of
  /// layout `layout`; it ends them as it ends its own.
  ParameterHolder(caf::actor_system& sys, uint64_t layout, std::vector<uint64_t> bounds,
                  std::vector<holder_actor> running);
  ~ParameterHolder();
  ParameterHolder(const ParameterHolder&) = delete;
  ParameterHolder& operator=(const ParameterHolder&) = delete;

  /// The holder (the first shard of a sharded one).
  holder_actor handle() const {
    return shards_.front();
  }
  const std::vector<holder_actor>& shards() const {
    return shards_;
  }
  /// Where each shard's values begin, and the count at the end.
  const std::vector<uint64_t>& bounds() const {
    return bounds_;
  }
  /// Shard `shard` is now `next` (a lost shard brought back elsewhere); the old
  /// handle is ended.
  void replace(size_t shard, holder_actor next);
  /// Points `link` at this holder (every shard of a sharded one).
  void link(sgd_link& link) const;
  /// The layout fingerprint (training::layout_hash) updates must carry (a shard's
  /// slices carry shard_layout's).
  uint64_t layout() const {
    return layout_;
  }
  /// The holder's counters (version, applied, rejected, pulls). Sharded: the least
  /// advanced shard's version, applied and rounds, the largest rejected and pulls.
  holder_status status();
  /// Each shard's counters.
  std::vector<holder_status> shard_status();
  /// Copies the holder's current parameters into `model` (same layout); returns
  /// their version (sharded: the least of the shards'). Throws pnn::error when the
  /// layout differs.
  uint64_t load_into(models::Network& model);
  /// The holder's parameters and its optimizer's state (empty without one): what
  /// its checkpoint keeps. Throws pnn::error when the holder does not answer, or
  /// is sharded (see checkpoints()).
  std::pair<param_blob, std::string> checkpoint();
  /// Every shard's checkpoint (its slice, version and optimizer state).
  std::vector<std::pair<param_blob, std::string>> checkpoints();
  /// Publishes the holder on `bind`:`port` (0: the OS picks) and returns the port.
  /// Requires the middleman, and one shard. Throws pnn::error when the port cannot
  /// be opened.
  uint16_t publish(uint16_t port = 0, const std::string& bind = "127.0.0.1");
  /// Ends the holder's actors (also done by the destructor).
  void stop();

  /// Splits a model's flat parameters `whole` into slices at `bounds`, each with
  /// its shard's layout (one bound pair: `whole` itself).
  static std::vector<param_blob> split(const param_blob& whole,
                                       const std::vector<uint64_t>& bounds);

private:
  std::string misfit(size_t shard, const param_blob& b) const;

  caf::actor_system& sys_;
  std::vector<holder_actor> shards_;
  std::vector<uint64_t> bounds_;
  uint64_t layout_ = 0;
  double timeout_ = 60;
};

} // namespace pnn
