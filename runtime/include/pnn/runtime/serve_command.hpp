#pragma once

#include <pnn/actors/protocol.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace pnn::runtime {

/// What `pnn-node serve` was asked to do.
struct serve_request {
  uint16_t port = 0;              ///< 0: the OS picks one (printed)
  std::string bind = "127.0.0.1"; ///< address to listen on
  int32_t slots = 0;              ///< 0: one per core
  std::string data_dir;           ///< this host's dataset folder
  double peer_timeout = 30;       ///< seconds of silence after which a coordinator counts as gone
  tls_files tls;                  ///< all three set: TLS with mutual authentication
  bool dry_run = false;           ///< check the flags, then return 0 without listening
  int32_t metrics_port = 0;       ///< --metrics-port on `bind` (0: none)
  /// Where holder shards run here serve pulls and pushes beside CAF (bulk_wire.hpp):
  /// "auto" (`bind`), an address, or "off". None with TLS.
  std::string bulk_bind = "auto";
  // What a coordinator may ask of this host (a job beyond them fails, naming the flag).
  int64_t max_dataset_cache_mb = 4096; ///< datasets kept loaded for coordinators' jobs
  int64_t max_checkpoint_mb = 1024;    ///< a checkpoint sent along with a job
  int64_t max_holder_mb = 4096;        ///< holder shards run here (values and moments)
  int32_t max_workers = 0;             ///< workers alive at once (0: 4 x slots)
  std::vector<std::string> allowed_data_dirs; ///< folders a job_spec may name as data_dir
};

/// Publishes this host's node actor and serves until SIGINT or SIGTERM. Prints one
/// line "pnn serve: listening on ADDR:PORT ..." once coordinators can connect.
/// Returns the exit code. Throws pnn::error when it cannot listen.
int run_serve(const serve_request& request);

} // namespace pnn::runtime
