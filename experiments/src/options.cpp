#include <pnn/experiments/options.hpp>

#include <pnn/actors/node.hpp>
#include <pnn/error.hpp>
#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/schedules.hpp>

namespace pnn {

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

} // namespace

void optimizer_group::validate() const {
  training::optimizer_options::parse(optimizer, lr);
}

void schedule_group::validate() const {
  if (epochs < 1)
    bad("--epochs " + std::to_string(epochs) + ": expected at least 1");
  if (batch_size < 1)
    bad("--batch-size " + std::to_string(batch_size) + ": expected at least 1");
}

void cluster_group::validate() const {
  for (const auto& h : hosts)
    parse_host_port(h, "--hosts");
  if (slots < 0 || slots > 1024)
    bad("--slots " + std::to_string(slots) + ": expected 1..1024 (0: one per core)");
  if (!(connect_timeout > 0))
    bad("--connect-timeout " + std::to_string(connect_timeout) + ": expected seconds > 0");
  if (!(peer_timeout >= 1))
    bad("--peer-timeout " + std::to_string(peer_timeout) + ": expected seconds >= 1");
  check_tls(tls);
}

void output_group::validate() const {
  if (out.empty())
    bad("--out: expected the output folder");
}

void replica_group::validate(const char* command) const {
  if (!initial_model && !models::has_model(model))
    models::make_model(model, 1, 10); // throws the error listing valid names
  if (initial_model && initial_model->registry_name().empty())
    bad(std::string(command)
        + ": the model was not built by make_model; register it with register_model and "
          "build it by name, so that workers can build replicas of it");
  training::schedule_options::parse(scheduler);
  if (threads_per_worker < 1 || threads_per_worker > 1024)
    bad("--threads-per-worker " + std::to_string(threads_per_worker) + ": expected 1..1024");
  if (test_batch_size < 1)
    bad("--test-batch-size " + std::to_string(test_batch_size) + ": expected at least 1");
  if (loss_window < 1)
    bad("--loss-window " + std::to_string(loss_window) + ": expected at least 1");
}

} // namespace pnn
