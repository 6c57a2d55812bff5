#include <pnn/actors/metric_collector.hpp>

#include <pnn/training/progress.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/system.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace pnn {

using namespace pnn::training;

struct collector_state::impl {
  cpu_sampler sampler;
  std::vector<cpu_sample> samples;
  std::map<uint32_t, job_progress> running;
  /// Jobs whose result came: a late progress event (it may travel another path,
  /// e.g. through a user's actor) does not bring them back to the display.
  std::set<uint32_t> ended;
  /// Per job folder, the newest checkpoint epoch written: an older one (from a host
  /// that was dropped and wakes up later) must not replace latest.pt.
  std::map<std::string, int64_t> newest_checkpoint;
  size_t stale_checkpoints = 0;
  size_t finished = 0;
  double finished_cost = 0;
  size_t failed = 0;
  size_t refused_checkpoints = 0;
  bool done = false;
  std::unique_ptr<progress_line> line;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
};

collector_state::collector_state() : d(std::make_unique<impl>()) {
}
collector_state::~collector_state() = default;

namespace {

/// A job's share of the run's work: its estimated cost, or 1 when costs are unknown.
double cost_of(const collector_options& o, uint32_t id) {
  auto i = o.costs.find(id);
  return i != o.costs.end() && i->second > 0 ? i->second : 1.0;
}

double total_cost(const collector_options& o) {
  double total = 0;
  for (const auto& [id, label] : o.labels)
    total += cost_of(o, id);
  return total > 0 ? total : static_cast<double>(o.total_jobs);
}

std::string label_of(const collector_options& o, uint32_t id) {
  auto i = o.labels.find(id);
  return i != o.labels.end() ? i->second : "job " + std::to_string(id);
}

void show(collector_state::impl& d, const collector_options& o, bool force) {
  char buf[256];
  double elapsed
    = std::chrono::duration<double>(std::chrono::steady_clock::now() - d.start).count();
  // Work done in cost units: finished jobs plus the done fraction of running ones.
  double work = d.finished_cost;
  std::string text;
  for (const auto& [id, p] : d.running) {
    double frac = p.epochs > 0 && p.batches > 0
                    ? (static_cast<double>(p.epoch - 1)
                       + static_cast<double>(p.batch) / static_cast<double>(p.batches))
                        / static_cast<double>(p.epochs)
                    : 0.0;
    work += frac * cost_of(o, id);
    std::snprintf(buf, sizeof buf, " | s%d %s e%lld/%lld b%lld/%lld loss %.3f t%d", p.slot,
                  label_of(o, id).c_str(), static_cast<long long>(p.epoch),
                  static_cast<long long>(p.epochs), static_cast<long long>(p.batch),
                  static_cast<long long>(p.batches), p.loss, p.threads);
    text += buf;
  }
  double cpu = d.samples.empty() ? 0.0 : d.samples.back().utilization;
  const double total = total_cost(o);
  double eta = work > 0.01 * total ? elapsed * std::max(0.0, total - work) / work : -1;
  std::snprintf(buf, sizeof buf, "[%zu/%zu done] CPU %3.0f%% ETA %s", d.finished, o.total_jobs,
                100 * cpu, eta >= 0 ? format_duration(eta).c_str() : "?");
  d.line->update(buf + text, force);
}

} // namespace

collector_actor::behavior_type
metric_collector(collector_actor::stateful_pointer<collector_state> self, collector_options o) {
  auto& d = *self->state.d;
  d.line = std::make_unique<progress_line>(progress_line::parse_mode(o.progress));
  const auto interval = std::chrono::microseconds{static_cast<int64_t>(o.sample_interval * 1e6)};
  self->delayed_send(self, interval, cpu_atom::value);
  return {
    [=](progress_atom, const job_progress& p) {
      auto& d = *self->state.d;
      if (d.ended.count(p.id))
        return;
      d.running[p.id] = p;
      show(d, o, false);
    },
    [=](checkpoint_atom, const job_checkpoint& c) {
      auto& d = *self->state.d;
      namespace fs = std::filesystem;
      std::error_code ec;
      const auto root = fs::weakly_canonical(o.out_dir, ec);
      const auto dir = fs::weakly_canonical(c.out_dir, ec);
      auto [r, rest] = std::mismatch(root.begin(), root.end(), dir.begin(), dir.end());
      if (o.out_dir.empty() || c.out_dir.empty() || ec || r != root.end() || rest == dir.end()
          || c.epoch < 0) {
        if (d.refused_checkpoints++ == 0)
          std::fprintf(stderr, "pnn: dropped a checkpoint for %s (outside %s)\n",
                       c.out_dir.c_str(), o.out_dir.string().c_str());
        return;
      }
      auto& newest = d.newest_checkpoint[dir.string()];
      if (c.epoch < newest) {
        if (d.stale_checkpoints++ == 0)
          std::fprintf(stderr, "pnn: dropped a stale checkpoint for %s (epoch %lld after %lld)\n",
                       c.out_dir.c_str(), static_cast<long long>(c.epoch),
                       static_cast<long long>(newest));
        return;
      }
      newest = c.epoch;
      try {
        const std::string bytes(c.bytes.begin(), c.bytes.end());
        write_file_atomic(dir / ("epoch_" + std::to_string(c.epoch) + ".pt"), bytes);
        write_file_atomic(dir / "latest.pt", bytes);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "pnn: %s\n", e.what());
      }
    },
    [=](result_atom, const job_result& r) {
      auto& d = *self->state.d;
      if (o.on_result) {
        try {
          o.on_result(r);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "pnn: %s\n", e.what());
        }
      }
      d.running.erase(r.id);
      d.ended.insert(r.id);
      ++d.finished;
      d.finished_cost += cost_of(o, r.id);
      d.line->finish();
      if (!r.ok)
        ++d.failed;
      if (o.progress == "none") {
        // Quiet: results are in the files and the caller's report.
      } else if (r.ok && std::isfinite(r.val_accuracy) && r.val_accuracy >= 0) {
        // (CAF 0.17 turns a NaN into -1 on the wire: an accuracy < 0 means "none".)
        std::printf("done %s (%s, slot %d): validation accuracy %.4f, loss %.4f, %.1f s\n",
                    label_of(o, r.id).c_str(), r.host.c_str(), r.slot, r.val_accuracy, r.val_loss,
                    r.finished_at - r.started_at);
      } else if (r.ok) { // an SGD share: no validation set
        std::printf("done %s (%s, slot %d): train loss %.4f, %.1f s\n", label_of(o, r.id).c_str(),
                    r.host.c_str(), r.slot, r.train_loss, r.finished_at - r.started_at);
      } else {
        std::printf("FAILED %s (%s, slot %d): %s\n", label_of(o, r.id).c_str(), r.host.c_str(),
                    r.slot, r.error.c_str());
      }
      std::fflush(stdout);
      show(d, o, true);
    },
    [=](cpu_atom) {
      auto& d = *self->state.d;
      if (d.done)
        return;
      cpu_sample s;
      if (d.sampler.sample(s))
        d.samples.push_back(s);
      self->delayed_send(self, interval, cpu_atom::value);
    },
    [=](done_atom) -> double {
      auto& d = *self->state.d;
      cpu_sample s;
      if (!d.done && d.sampler.sample(s))
        d.samples.push_back(s);
      d.done = true;
      d.line->finish();
      if (!o.out_dir.empty())
        write_file_atomic(o.out_dir / "cpu.csv", cpu_csv(d.samples));
      double sum = 0;
      for (const auto& x : d.samples)
        sum += x.utilization;
      return d.samples.empty() ? 0.0 : sum / static_cast<double>(d.samples.size());
    },
  };
}

} // namespace pnn
