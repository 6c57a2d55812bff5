#pragma once

#include <pnn/actors/protocol.hpp>
#include <pnn/system.hpp>

#include <caf/actor_system.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace pnn {

// The metric collector: a run's event sink (collector_actor in protocol.hpp). It
// receives progress, results and remote checkpoints, samples CPU utilisation from
// /proc/stat on its own timer and drives the terminal progress output. It writes no
// file itself: a remote checkpoint whose out_dir lies inside the run's folder (and
// is not older than one it already took for that folder) goes to store_checkpoint,
// any other is dropped and counted (a peer does not choose where the coordinator
// writes); (done_atom) stops the sampling, hands the samples to store_cpu and
// answers the mean utilisation (0..1). experiments/ fills the hooks with file writers
// (record_to_files).

/// What the collector shows and where its records go.
struct collector_options {
  /// The run's folder: remote checkpoints are taken only for job folders inside it
  /// ("" takes none).
  std::filesystem::path out_dir;
  std::string progress = "auto"; ///< auto, plain or none
  size_t total_jobs = 0;
  std::map<uint32_t, std::string> labels; ///< job id -> "lenet5/cosine/fold0"
  std::map<uint32_t, double> costs;       ///< job id -> estimated cost, for the ETA
  double sample_interval = 0.5;           ///< seconds between CPU samples
  /// In-process only: called with every job result as it arrives (K-fold stores
  /// each finished job at once, so that a coordinator killed later keeps it).
  std::function<void(const job_result&)> on_result;
  /// In-process only: stores an accepted remote checkpoint; `dir` is its job folder
  /// (canonical, inside out_dir). An exception is reported, the run goes on.
  std::function<void(const std::filesystem::path& dir, const job_checkpoint&)> store_checkpoint;
  /// In-process only: stores the run's CPU samples when the run ends.
  std::function<void(const std::vector<cpu_sample>&)> store_cpu;
};

/// Spawns a collector.
collector_actor spawn_collector(caf::actor_system& sys, collector_options options);

} // namespace pnn
