#include <pnn/experiments/session.hpp>

#include <pnn/files.hpp>
#include <pnn/system.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

namespace pnn {

run_meter::run_meter()
  : start_(std::chrono::steady_clock::now()), started_at_(pnn::wall_clock_seconds()) {
  const auto cpu = pnn::process_cpu_times();
  user_start_ = cpu.user_seconds;
  system_start_ = cpu.system_seconds;
}

double run_meter::wall_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

run_meter::reading run_meter::read() const {
  reading r;
  r.wall_seconds = wall_seconds();
  const auto cpu = pnn::process_cpu_times();
  r.user_cpu_seconds = cpu.user_seconds - user_start_;
  r.system_cpu_seconds = cpu.system_seconds - system_start_;
  r.peak_rss_bytes = pnn::peak_rss_bytes();
  return r;
}

void record_to_files(collector_options& options, const std::filesystem::path& out) {
  options.out_dir = out;
  options.store_checkpoint = [](const std::filesystem::path& dir, const job_checkpoint& c) {
    const std::string bytes(c.bytes.begin(), c.bytes.end());
    // Its steps first: the checkpoint names how many it needs (a refusal here, a
    // gap or a bad size, keeps the last good pair).
    training::write_steps_file(dir / training::steps_file_name, c.steps_from, c.steps);
    if (!c.mid_epoch) // an interrupted job's checkpoint is no epoch's end
      write_file_atomic(dir / ("epoch_" + std::to_string(c.epoch) + ".pt"), bytes);
    write_file_atomic(dir / "latest.pt", bytes);
  };
  options.store_cpu = [out](const std::vector<cpu_sample>& samples) {
    write_file_atomic(out / "cpu.csv", cpu_csv(samples));
  };
}

run_session::run_session(const session_options& o) {
  configure_actor_system(cfg_, static_cast<size_t>(std::max(1, o.threads)));
  if (o.network)
    configure_network(cfg_, o.peer_timeout, o.tls);
  sys_ = std::make_unique<caf::actor_system>(cfg_);
  self_ = std::make_unique<caf::scoped_actor>(*sys_);
  cluster_ = std::make_unique<Cluster>(*sys_, o.connect_timeout, o.hosts_label);
}

run_session::~run_session() {
  shutdown();
  // Destroyed before the actor system, in this order.
  cluster_.reset();
  self_.reset();
}

collector_actor run_session::start_collector(collector_options options) {
  collector_ = keep(spawn_collector(*sys_, std::move(options)));
  return collector_;
}

double run_session::finish_collector() {
  double mean = 0;
  if (collector_)
    (*self_)
      ->request(collector_, caf::infinite, done_atom::value)
      .receive([&](double m) { mean = m; }, [&](caf::error&) {});
  return mean;
}

void run_session::shutdown() {
  if (cluster_)
    cluster_->shutdown();
  actors_.stop();
}

} // namespace pnn
