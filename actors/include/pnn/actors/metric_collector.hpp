#pragma once

#include <pnn/actors/protocol.hpp>

#include <caf/typed_actor.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace pnn {

/// Receives a run's metric events, samples CPU utilisation from /proc/stat, drives
/// the terminal progress output and writes cpu.csv.
using collector_actor = caf::typed_actor<
  /// A running job's progress.
  caf::reacts_to<progress_atom, job_progress>,
  /// A job ended.
  caf::reacts_to<result_atom, job_result>,
  /// A checkpoint of a job on another host: written as <out_dir>/epoch_<epoch>.pt and
  /// latest.pt, when out_dir lies inside the collector's out_dir (else dropped and
  /// counted: a peer does not choose where the coordinator writes).
  caf::reacts_to<checkpoint_atom, job_checkpoint>,
  /// Take a CPU sample (the collector's own timer).
  caf::reacts_to<cpu_atom>,
  /// The run ended: stop sampling, write cpu.csv, reply the mean utilisation (0..1).
  caf::replies_to<done_atom>::with<double>>;

/// What the collector shows and where it writes.
struct collector_options {
  std::filesystem::path out_dir;      ///< cpu.csv goes here ("" writes nothing)
  std::string progress = "auto";      ///< auto, plain or none
  size_t total_jobs = 0;
  std::map<uint32_t, std::string> labels; ///< job id -> "lenet5/cosine/fold0"
  std::map<uint32_t, double> costs;       ///< job id -> estimated cost, for the ETA
  double sample_interval = 0.5;       ///< seconds between CPU samples
  /// In-process only: called with every job result as it arrives (K-fold stores
  /// each finished job at once, so that a coordinator killed later keeps it).
  std::function<void(const job_result&)> on_result;
};

/// The collector's state; opaque to callers.
struct collector_state {
  struct impl;
  std::unique_ptr<impl> d;
  collector_state();
  ~collector_state();
  static inline const char* name = "pnn.metric_collector";
};

collector_actor::behavior_type
metric_collector(collector_actor::stateful_pointer<collector_state> self, collector_options options);

} // namespace pnn
