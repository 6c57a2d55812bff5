#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/actor_system.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace pnn {

// The metric collector: a run's event sink (collector_actor in protocol.hpp). It
// receives progress, results and remote checkpoints, samples CPU utilisation from
// /proc/stat on its own timer, drives the terminal progress output and writes
// cpu.csv; a remote checkpoint is written as <out_dir>/epoch_<epoch>.pt and
// latest.pt when its out_dir lies inside the collector's out_dir (else dropped and
// counted: a peer does not choose where the coordinator writes). (done_atom) stops
// the sampling, writes cpu.csv and answers the mean utilisation (0..1).

/// What the collector shows and where it writes.
struct collector_options {
  std::filesystem::path out_dir; ///< cpu.csv goes here ("" writes nothing)
  std::string progress = "auto"; ///< auto, plain or none
  size_t total_jobs = 0;
  std::map<uint32_t, std::string> labels; ///< job id -> "lenet5/cosine/fold0"
  std::map<uint32_t, double> costs;       ///< job id -> estimated cost, for the ETA
  double sample_interval = 0.5;           ///< seconds between CPU samples
  /// In-process only: called with every job result as it arrives (K-fold stores
  /// each finished job at once, so that a coordinator killed later keeps it).
  std::function<void(const job_result&)> on_result;
};

/// Spawns a collector.
collector_actor spawn_collector(caf::actor_system& sys, collector_options options);

} // namespace pnn
