#pragma once

// What this process is doing, for `--metrics-port` (pnn-node serves it in Prometheus'
// text format: runtime/metrics_endpoint.hpp). Plain atomics, set where the facts are
// (the fold dispatcher, the training workers, the parameter holder, the host watcher,
// a serve node) and read when scraped: no lock and no message on any hot path. One
// set per process, which runs one command.

#include <atomic>
#include <cstdint>

namespace pnn {

struct process_metrics {
  /// A K-fold coordinator's jobs by state (the fold dispatcher's queue; hogwild and
  /// sgd have no queue: their workers show in the worker figures below).
  std::atomic<int64_t> jobs_queued{0}, jobs_running{0}, jobs_paused{0}, jobs_done{0},
    jobs_failed{0};
  /// Training workers in this process with a job, and the jobs they ended.
  std::atomic<int64_t> workers_busy{0};
  std::atomic<uint64_t> worker_jobs_ok{0}, worker_jobs_failed{0};
  /// Samples trained by this process's workers.
  std::atomic<uint64_t> samples_trained{0};
  /// Parameter holder shards in this process: updates applied, pushes refused, pulls.
  std::atomic<uint64_t> holder_updates{0}, holder_rejections{0}, holder_pulls{0};
  /// A coordinator: serve hosts it has live workers on. A serve node: coordinators it
  /// runs workers or holder shards for.
  std::atomic<int64_t> hosts_alive{0}, coordinators{0};
};

/// This process's metrics.
process_metrics& metrics();

} // namespace pnn
