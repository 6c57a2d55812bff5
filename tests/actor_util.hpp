#pragma once

// Helpers for the actor suites: a typed event sink that records what it receives.

#include <pnn/actors/protocol.hpp>

#include <caf/all.hpp>

#include <memory>
#include <vector>

namespace pnn::test {

/// What a recording sink received, in order.
struct sink_record {
  std::vector<job_progress> progress;
  std::vector<job_result> results;
  std::vector<job_checkpoint> checkpoints;
  std::vector<std::pair<job_spec, worker_actor>> assigned;
  /// How many of the next checkpoints to answer with an error (as the collector
  /// answers one it refuses or cannot store); they are recorded all the same.
  size_t refuse_checkpoints = 0;
};

/// An event sink (the collector's interface) that appends every event to `record`.
inline event_sink_actor spawn_recording_sink(caf::actor_system& sys,
                                             std::shared_ptr<sink_record> record) {
  return sys.spawn([record](event_sink_actor::pointer) -> event_sink_actor::behavior_type {
    return {
      [record](progress_atom, const job_progress& p) { record->progress.push_back(p); },
      [record](result_atom, const job_result& r) { record->results.push_back(r); },
      [record](checkpoint_atom, const job_checkpoint& c) -> caf::result<void> {
        record->checkpoints.push_back(c);
        if (record->refuse_checkpoints == 0)
          return caf::unit;
        --record->refuse_checkpoints;
        return caf::make_error(caf::sec::runtime_error, "refused by the test");
      },
      [record](assign_atom, const job_spec& j, const worker_actor& w) {
        record->assigned.emplace_back(j, w);
      },
    };
  });
}

} // namespace pnn::test
