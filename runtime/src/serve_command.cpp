#include <pnn/runtime/serve_command.hpp>
#include <pnn/runtime/metrics_endpoint.hpp>

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/network.hpp>
#include <pnn/actors/node.hpp>
#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/system.hpp>
#include <pnn/training/dataset.hpp>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <optional>
#include <string>

#include <pthread.h>
#include <unistd.h>

namespace pnn::runtime {

namespace {

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

} // namespace

int run_serve(const serve_request& r) {
  const int cores = pnn::available_cores();
  if (r.slots < 0 || r.slots > 1024)
    throw pnn::error(error_code::invalid_argument,
                     "--slots " + std::to_string(r.slots) + ": expected 1..1024 (0: one per core)");
  check_tls(r.tls);
  if (!(r.peer_timeout >= 1))
    throw pnn::error(error_code::invalid_argument,
                     "--peer-timeout " + std::to_string(r.peer_timeout)
                       + ": expected seconds >= 1");
  if (r.bind.empty())
    throw pnn::error(error_code::invalid_argument, "--bind: expected an address");
  if (r.max_dataset_cache_mb < 1 || r.max_dataset_cache_mb > (int64_t{1} << 30))
    throw pnn::error(error_code::invalid_argument,
                     "--max-dataset-cache-mb " + std::to_string(r.max_dataset_cache_mb)
                       + ": expected 1 or more (MB)");
  if (r.max_checkpoint_mb < 1 || r.max_checkpoint_mb > (int64_t{1} << 30))
    throw pnn::error(error_code::invalid_argument,
                     "--max-checkpoint-mb " + std::to_string(r.max_checkpoint_mb)
                       + ": expected 1 or more (MB)");
  if (r.max_holder_mb < 1 || r.max_holder_mb > (int64_t{1} << 30))
    throw pnn::error(error_code::invalid_argument,
                     "--max-holder-mb " + std::to_string(r.max_holder_mb)
                       + ": expected 1 or more (MB)");
  if (r.max_workers < 0 || r.max_workers > 65536)
    throw pnn::error(error_code::invalid_argument,
                     "--max-workers " + std::to_string(r.max_workers)
                       + ": expected 0 (4 x slots) or 1..65536");
  for (const auto& d : r.allowed_data_dirs)
    if (d.empty() || !std::filesystem::is_directory(d))
      throw pnn::error(error_code::invalid_argument,
                       "--allow-data-dir " + d + ": expected an existing folder");
  if (r.dry_run) {
    std::printf("pnn-node serve: flags ok (--dry-run: nothing run)\n");
    return 0;
  }
  // Before any actor: a port that cannot be had ends the command at once.
  std::optional<metrics_endpoint> metrics;
  if (r.metrics_port > 0)
    metrics.emplace("serve", r.bind, static_cast<uint16_t>(r.metrics_port));
  // SIGINT/SIGTERM are taken by sigwait below: block them before CAF starts its
  // threads, which inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Scratch folders of earlier serve processes that were killed (SIGKILL, a crash)
  // hold checkpoints of other coordinators' jobs: they go now.
  if (auto n = scratch_folder::remove_stale(); n > 0)
    std::fprintf(stderr, "pnn serve: removed %zu scratch folder(s) left by ended processes\n", n);
  node_options o;
  o.slots = r.slots > 0 ? r.slots : cores;
  caf::actor_system_config cfg;
  // No more scheduler threads than slots: an idle one only steals a worker's next
  // slice onto another core, cache-cold (measured with HOGWILD).
  configure_actor_system(cfg, static_cast<size_t>(std::min(cores, o.slots)));
  configure_network(cfg, r.peer_timeout, r.tls);
  caf::actor_system sys{cfg};
  o.cores = cores;
  o.data_dir = r.data_dir;
  o.max_workers = r.max_workers > 0 ? r.max_workers : 4 * o.slots;
  o.limits.max_threads = cores;
  o.limits.max_checkpoint_bytes = r.max_checkpoint_mb << 20;
  o.limits.max_holder_bytes = r.max_holder_mb << 20;
  o.limits.restrict_data_dirs = true;
  o.limits.data_dirs = r.allowed_data_dirs;
  training::set_dataset_cache_limit(r.max_dataset_cache_mb << 20, "--max-dataset-cache-mb");
  if (r.bulk_bind != "off" && !r.tls.enabled()) {
    const auto at = r.bulk_bind == "auto" ? r.bind : r.bulk_bind;
    try {
      o.bulk = std::make_shared<bulk_server>(at);
    } catch (const std::exception& e) {
      throw pnn::error(error_code::invalid_argument, "--bulk-bind " + r.bulk_bind + ": " + e.what());
    }
  }
  auto node = spawn_node(sys, o);
  auto port = publish_actor(sys, node, r.port, r.bind);
  if (!port) {
    caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
    throw pnn::error(error_code::invalid_argument,
                     "--port " + std::to_string(r.port) + ": cannot listen on " + r.bind + ":"
                       + std::to_string(r.port) + " (" + sys.render(port.error()) + ")");
  }
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0)
    std::snprintf(name, sizeof name, "%s", "localhost");
  o.host->set(std::string{name} + ":" + std::to_string(*port));
  if (!is_loopback(r.bind) && !r.tls.enabled())
    std::fprintf(stderr,
                 "pnn serve: warning: listening on %s without TLS: any host that reaches it can "
                 "run jobs here (unauthenticated)\n",
                 r.bind.c_str());
  const auto bulk_text =
    o.bulk ? ", bulk port " + std::to_string(o.bulk->port()) : std::string{};
  std::printf("pnn serve: listening on %s:%u (%d slot(s), %d core(s), host %s%s%s)\n",
              r.bind.c_str(), static_cast<unsigned>(*port), o.slots, cores, o.host->get().c_str(),
              r.tls.enabled() ? ", TLS with client certificates" : "", bulk_text.c_str());
  if (metrics) {
    std::printf("pnn serve: metrics at http://%s:%u/metrics\n", r.bind.c_str(),
                static_cast<unsigned>(metrics->port()));
    if (!is_loopback(r.bind))
      std::fprintf(stderr,
                   "pnn serve: warning: metrics on %s over plain HTTP: any host that reaches it "
                   "can read them (no TLS, no authentication)\n",
                   r.bind.c_str());
  }
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::printf("pnn serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
  sys.middleman().unpublish(node, *port);
  return 0;
}

} // namespace pnn::runtime
