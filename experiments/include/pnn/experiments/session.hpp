#pragma once

// One run's time on the actor runtime, set up and torn down in one place: the actor
// system (pnn's settings, the network when hosts take part), the hosts (Cluster), the
// metric collector, and every actor the run started, which all end when the session
// does, before the actor system stops. kfold, hogwild and sgd each open one.

#include <pnn/actors/actor_group.hpp>
#include <pnn/actors/cluster.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

namespace pnn {

/// Wall time, CPU time and peak memory of a run, counted from construction.
class run_meter {
public:
  run_meter();
  struct reading {
    double wall_seconds = 0;
    double user_cpu_seconds = 0;
    double system_cpu_seconds = 0;
    long long peak_rss_bytes = 0;
  };
  /// What was spent since construction (peak RSS: of the whole process).
  reading read() const;
  double wall_seconds() const;
  /// The wall clock (seconds since the Unix epoch) at construction.
  double started_at() const {
    return started_at_;
  }

private:
  std::chrono::steady_clock::time_point start_;
  double started_at_ = 0;
  double user_start_ = 0;
  double system_start_ = 0;
};

/// Has the collector keep its records as files of the run's folder `out`: cpu.csv,
/// and each accepted remote checkpoint as epoch_<epoch>.pt and latest.pt in its job
/// folder.
void record_to_files(collector_options& options, const std::filesystem::path& out);

/// What a session needs to start its actor system.
struct session_options {
  int32_t threads = 1; ///< CAF scheduler threads
  /// Load CAF's network layer: hosts take part (or may join).
  bool network = false;
  double peer_timeout = 30;            ///< seconds of silence after which a host counts as lost
  double connect_timeout = 10;         ///< seconds to wait for a host's node to answer
  tls_files tls;                       ///< TLS with mutual authentication (all or none)
  std::string hosts_label = "--hosts"; ///< starts messages about a host
};

class run_session {
public:
  explicit run_session(const session_options& options);
  /// Ends every actor of the session (shutdown()).
  ~run_session();
  run_session(const run_session&) = delete;
  run_session& operator=(const run_session&) = delete;

  caf::actor_system& system() {
    return *sys_;
  }
  /// A blocking actor of the session's own, for requests from the run's thread.
  caf::scoped_actor& self() {
    return *self_;
  }
  /// The hosts of the run and the workers started through it.
  Cluster& cluster() {
    return *cluster_;
  }

  /// Starts the run's metric collector.
  collector_actor start_collector(collector_options options);
  /// `handle` ends with the session.
  template <class Handle>
  Handle keep(Handle handle) {
    return actors_.add(std::move(handle));
  }
  /// Tells the collector the run ended (it writes cpu.csv) and answers the run's
  /// mean CPU utilisation (0..1; 0 without a collector).
  double finish_collector();
  /// Ends every worker of the cluster and every actor kept (idempotent).
  void shutdown();

private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::unique_ptr<Cluster> cluster_;
  actor_group actors_;
  collector_actor collector_;
};

} // namespace pnn
