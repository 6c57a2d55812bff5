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
  register_message_types(cfg);
  add_error_category(cfg);
}

} // namespace pnn
