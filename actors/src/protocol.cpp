#include <pnn/actors/protocol.hpp>

#include <pnn/actors/errors.hpp>

#include <caf/actor_system_config.hpp>

namespace pnn {

void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<job_spec>("pnn::job_spec");
  cfg.add_message_type<job_progress>("pnn::job_progress");
  cfg.add_message_type<job_result>("pnn::job_result");
  cfg.add_message_type<node_info>("pnn::node_info");
  cfg.add_message_type<param_blob>("pnn::param_blob");
  cfg.add_message_type<holder_status>("pnn::holder_status");
}

void configure_actor_system(caf::actor_system_config& cfg, size_t threads) {
  cfg.set("scheduler.max-threads", threads < 1 ? size_t{1} : threads);
  cfg.set("scheduler.max-throughput", size_t{1});
  // An idle scheduler thread polls its queue (100 spins, then 500 polls 50 us
  // apart: 25 ms of wake-ups after every message) before it sleeps on a condition
  // variable that new work signals. A coordinator that answers a message every few
  // milliseconds thus never sleeps and takes CPU from the training processes on the
  // same cores: distributed SGD on 2 serve processes ran at 11.0-11.9k samples/s
  // with the defaults, 14.1-14.8k with 2 + 2 polls (HOGWILD unchanged).
  cfg.set("work-stealing.aggressive-poll-attempts", size_t{2});
  cfg.set("work-stealing.moderate-poll-attempts", size_t{2});
  register_message_types(cfg);
  add_error_category(cfg);
}

} // namespace pnn
