#include <pnn/actors/protocol.hpp>

#include <pnn/actors/errors.hpp>

#include <caf/actor_system_config.hpp>
#include <caf/timespan.hpp>

#include <chrono>

namespace pnn {

void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<job_spec>("pnn::job_spec");
  cfg.add_message_type<job_progress>("pnn::job_progress");
  cfg.add_message_type<job_result>("pnn::job_result");
  cfg.add_message_type<node_info>("pnn::node_info");
  cfg.add_message_type<param_blob>("pnn::param_blob");
  cfg.add_message_type<holder_status>("pnn::holder_status");
  cfg.add_message_type<job_checkpoint>("pnn::job_checkpoint");
}

void configure_actor_system(caf::actor_system_config& cfg, size_t threads) {
  cfg.set("scheduler.max-threads", threads < 1 ? size_t{1} : threads);
  cfg.set("scheduler.max-throughput", size_t{1});
  // An idle scheduler thread polls its queue (100 spins, then 500 polls 50 us
  // apart: 25 ms of wake-ups after every message), then sleeps on a condition
  // variable that work from outside the scheduler signals, stealing from the other
  // threads only every relaxed-sleep-duration (10 ms). A coordinator answering a
  // message every few ms thus never slept and took CPU from the training processes
  // on the same cores; with 2 moderate polls and 1 ms relaxed sleeps distributed
  // SGD on serve processes went from 11.6-12.9k to 15-17k samples/s (bench_sgd),
  // in-process SGD and HOGWILD unchanged. (2 aggressive polls as well slowed
  // in-process SGD: a reply queued on a busy thread waited up to 10 ms.)
  cfg.set("work-stealing.moderate-poll-attempts", size_t{2});
  cfg.set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds(1)});
  register_message_types(cfg);
  add_error_category(cfg);
}

} // namespace pnn
