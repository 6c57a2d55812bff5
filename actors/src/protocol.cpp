#include <pnn/actors/protocol.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/actors/host_watcher.hpp>

#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/deserializer.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/timespan.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

namespace pnn {

caf::error load_wire_bytes(caf::deserializer& source, std::vector<char>& bytes) {
  size_t n = 0;
  if (auto e = source.begin_sequence(n))
    return e;
  bytes.clear();
  if (auto* binary = dynamic_cast<caf::binary_deserializer*>(&source)) {
    if (n > binary->remaining())
      return caf::sec::end_of_stream;
    bytes.resize(n);
    if (auto e = n > 0 ? source.apply_raw(n, bytes.data()) : caf::error{})
      return e;
  } else {
    // Another source: grow with what actually arrives, 1 MiB at a time.
    constexpr size_t chunk = size_t{1} << 20;
    for (size_t done = 0; done < n;) {
      const size_t take = std::min(chunk, n - done);
      bytes.resize(done + take);
      if (auto e = source.apply_raw(take, bytes.data() + done))
        return e;
      done += take;
    }
  }
  return source.end_sequence();
}

std::string job_settings(const job_spec& j) {
  char lr[32];
  std::snprintf(lr, sizeof lr, "%.17g", j.lr);
  std::string s;
  auto add = [&s](const char* key, const std::string& value) {
    s += std::string{key} + "=" + value + ";";
  };
  add("model", j.model);
  add("scheduler", j.scheduler);
  add("optimizer", j.optimizer);
  add("lr", lr);
  add("dataset", j.dataset);
  add("subset", std::to_string(j.subset));
  add("folds", std::to_string(j.folds));
  add("fold", std::to_string(j.fold));
  add("shards", std::to_string(j.shards));
  add("shard", std::to_string(j.shard));
  add("split_seed", std::to_string(j.split_seed));
  add("seed", std::to_string(j.seed));
  add("epochs", std::to_string(j.epochs));
  add("batch_size", std::to_string(j.batch_size));
  if (j.validate_every != 1) // (only then: checkpoints from before it still match)
    add("validate_every", std::to_string(j.validate_every));
  return s;
}

uint64_t shard_layout(uint64_t layout, uint64_t begin, uint64_t end) {
  // FNV-1a over the three numbers' bytes (as training::layout_hash mixes names).
  uint64_t h = 14695981039346656037ull;
  for (uint64_t v : {layout, begin, end})
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  return h;
}

void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<job_spec>("pnn::job_spec");
  cfg.add_message_type<job_progress>("pnn::job_progress");
  cfg.add_message_type<job_result>("pnn::job_result");
  cfg.add_message_type<node_info>("pnn::node_info");
  cfg.add_message_type<param_blob>("pnn::param_blob");
  cfg.add_message_type<holder_status>("pnn::holder_status");
  cfg.add_message_type<param_update>("pnn::param_update");
  cfg.add_message_type<push_ack>("pnn::push_ack");
  cfg.add_message_type<job_checkpoint>("pnn::job_checkpoint");
  cfg.add_message_type<sgd_link>("pnn::sgd_link");
  cfg.add_message_type<holder_actor>("pnn::holder_actor");
  cfg.add_message_type<holder_spec>("pnn::holder_spec");
  cfg.add_message_type<bulk_endpoint>("pnn::bulk_endpoint");
  cfg.add_message_type<holder_home_actor>("pnn::holder_home_actor");
  cfg.add_message_type<holder_directory_actor>("pnn::holder_directory_actor");
  cfg.add_message_type<worker_actor>("pnn::worker_actor");
  cfg.add_message_type<event_sink_actor>("pnn::event_sink_actor");
  cfg.add_message_type<std::vector<worker_actor>>("std::vector<pnn::worker_actor>");
  cfg.add_message_type<std::vector<host_join>>("std::vector<pnn::host_join>");
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

void check_tls(const tls_files& tls) {
  if (!tls.enabled())
    return;
  const std::pair<const char*, const std::string*> files[] = {
    {"--tls-cert", &tls.cert}, {"--tls-key", &tls.key}, {"--tls-ca", &tls.ca}};
  for (const auto& [flag, file] : files) {
    if (file->empty())
      throw pnn::error(error_code::invalid_argument,
                       std::string(flag)
                         + ": missing (TLS needs --tls-cert, --tls-key and --tls-ca)");
    std::ifstream in(*file);
    if (!in)
      throw pnn::error(error_code::invalid_argument,
                       std::string(flag) + " " + *file + ": cannot read the file");
    std::string first;
    std::getline(in, first);
    if (first.rfind("-----BEGIN ", 0) != 0)
      throw pnn::error(error_code::invalid_argument,
                       std::string(flag) + " " + *file + ": expected a PEM file (-----BEGIN ...)");
  }
}

void configure_network(caf::actor_system_config& cfg, double peer_timeout, const tls_files& tls) {
  cfg.load<caf::io::middleman>();
  if (tls.enabled()) {
    cfg.openssl_certificate = tls.cert;
    cfg.openssl_key = tls.key;
    cfg.openssl_cafile = tls.ca;
    cfg.load<caf::openssl::manager>();
  }
  const auto timeout = std::chrono::duration_cast<caf::timespan>(
    std::chrono::duration<double>(peer_timeout > 0 ? peer_timeout : 30.0));
  // The heartbeat keeps the *other* side's timeout at bay, and that side may have a
  // shorter one (serve and coordinator each have their own --peer-timeout): beat at
  // a fixed short interval, not at a fraction of our own timeout. With the interval
  // at timeout / 4, an idle serve (default 30 s: a beat every 7.5 s) was dropped by
  // a coordinator with --peer-timeout 3, and a serve with --peer-timeout 3 dropped a
  // default coordinator in the middle of every job.
  const caf::timespan beat = std::min<caf::timespan>(timeout / 4, std::chrono::milliseconds(250));
  cfg.set("middleman.heartbeat-interval", beat);
  cfg.set("middleman.connection-timeout", timeout);
}

} // namespace pnn
