#pragma once

// The host watcher: while a K-fold run goes on, brings hosts (back) into it. Every
// `interval` it asks which hosts are wanted (the --hosts and the lines of a
// --hosts-file), and connects each wanted host that has no live worker (again),
// adding its workers to the dispatcher. It watches the workers it added (monitor)
// to see a host go. Connecting blocks (up to the Cluster's timeout), so the watcher
// runs on its own thread (a detached actor) and never holds up a training worker.

#include <pnn/actors/cluster.hpp>
#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace pnn {

/// A host that joined a running experiment.
struct host_join {
  std::string address;
  double at = 0;     ///< seconds since the run started
  int32_t slots = 0; ///< workers it brought
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, host_join& x) {
  return f(caf::meta::type_name("host_join"), x.address, x.at, x.slots);
}

/// In-process only: it drives a Cluster by reference.
using host_watcher_actor = caf::typed_actor<
  /// Stop watching (after a connection attempt in progress) and answer the hosts
  /// that joined after the start; the watcher then ends.
  caf::replies_to<done_atom>::with<std::vector<host_join>>>;

/// A host to look for: its address and what named it in messages ("--hosts",
/// "--hosts-file hosts.txt").
struct wanted_host {
  std::string address;
  std::string label;
};

struct host_watcher_options {
  /// The hosts wanted now (asked at every look; may read a file that changes).
  std::function<std::vector<wanted_host>()> wanted;
  double interval = 2; ///< seconds between looks (the first look is at once)
  double t0 = 0;       ///< wall clock when the run started (host_join::at)
  /// Workers already started at the start, by host address: watched from now on.
  std::vector<std::pair<std::string, worker_actor>> initial;
  /// Says what happened ("host X joined with N slot(s)", "host X lost", ...).
  std::function<void(const std::string&)> log;
};

/// Spawns a watcher on its own thread. `cluster` is used by the watcher alone until
/// it answered done_atom; `dispatcher` gets each new worker, `sink` their events.
host_watcher_actor spawn_host_watcher(caf::actor_system& sys, Cluster& cluster,
                                      dispatcher_actor dispatcher, event_sink_actor sink,
                                      host_watcher_options options);

} // namespace pnn
