#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/actors/network.hpp>

#include <pnn/training/progress.hpp>
#include <pnn/system.hpp>

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

namespace {

/// The collector's CPU timer (to itself).
using cpu_atom = caf::atom_constant<caf::atom("cpu")>;

/// The collector as it sees itself: its public interface plus its timer.
using collector_impl = collector_actor::extend<caf::reacts_to<cpu_atom>>;

class collector_state {
public:
  static inline const char* name = "pnn.metric_collector";
  using pointer = collector_impl::stateful_pointer<collector_state>;

  void init(pointer self, collector_options options);
  void progress(const job_progress& p);
  caf::error checkpoint(const job_checkpoint& c);
  void result(const job_result& r);
  void assign(const job_spec& job, const worker_actor& worker);
  void sample_cpu();
  caf::result<double> done();

private:
  bool from_here() const;
  bool from_assigned_worker(uint32_t id) const;
  void refuse(const char* what, uint32_t id, const char* why = "not from the job's worker");
  double cost_of(uint32_t id) const;
  double total_cost() const;
  std::string label_of(uint32_t id) const;
  void print_result(const job_result& r) const;
  void show(bool force);

  pointer self_ = nullptr;
  collector_options o_;
  std::chrono::microseconds interval_{0};
  cpu_sampler sampler_;
  std::vector<cpu_sample> samples_;
  std::map<uint32_t, job_progress> running_;
  /// Jobs whose result came: a late progress event (it may travel another path,
  /// e.g. through a user's actor) does not bring them back to the display.
  std::set<uint32_t> ended_;
  /// Per job folder, the newest checkpoint epoch written: an older one (from a host
  /// that was dropped and wakes up later) must not replace latest.pt.
  std::map<std::string, int64_t> newest_checkpoint_;
  /// Who runs each job, and its folder (from the assignment message).
  struct assignment {
    caf::actor_addr worker;
    std::string out_dir;
  };
  std::map<uint32_t, assignment> assigned_;
  size_t refused_events_ = 0;
  size_t stale_checkpoints_ = 0;
  size_t refused_checkpoints_ = 0;
  size_t finished_ = 0;
  double finished_cost_ = 0;
  size_t failed_ = 0;
  bool done_ = false;
  std::unique_ptr<progress_line> line_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

void collector_state::init(pointer self, collector_options options) {
  self_ = self;
  o_ = std::move(options);
  line_ = std::make_unique<progress_line>(progress_line::parse_mode(o_.progress));
  interval_ = std::chrono::microseconds{static_cast<int64_t>(o_.sample_interval * 1e6)};
  self_->delayed_send(self_, interval_, cpu_atom::value);
}

/// A job's share of the run's work: its estimated cost, or 1 when costs are unknown.
double collector_state::cost_of(uint32_t id) const {
  auto i = o_.costs.find(id);
  return i != o_.costs.end() && i->second > 0 ? i->second : 1.0;
}

double collector_state::total_cost() const {
  double total = 0;
  for (const auto& [id, label] : o_.labels)
    total += cost_of(id);
  return total > 0 ? total : static_cast<double>(o_.total_jobs);
}

std::string collector_state::label_of(uint32_t id) const {
  auto i = o_.labels.find(id);
  return i != o_.labels.end() ? i->second : "job " + std::to_string(id);
}

void collector_state::show(bool force) {
  char buf[256];
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // Work done in cost units: finished jobs plus the done fraction of running ones.
  double work = finished_cost_;
  std::string text;
  for (const auto& [id, p] : running_) {
    double frac = p.epochs > 0 && p.batches > 0
      ? (static_cast<double>(p.epoch - 1)
         + static_cast<double>(p.batch) / static_cast<double>(p.batches))
        / static_cast<double>(p.epochs)
      : 0.0;
    work += frac * cost_of(id);
    std::snprintf(buf, sizeof buf, " | s%d %s e%lld/%lld b%lld/%lld loss %.3f t%d", p.slot,
                  label_of(id).c_str(), static_cast<long long>(p.epoch),
                  static_cast<long long>(p.epochs), static_cast<long long>(p.batch),
                  static_cast<long long>(p.batches), p.loss, p.threads);
    text += buf;
  }
  double cpu = samples_.empty() ? 0.0 : samples_.back().utilization;
  const double total = total_cost();
  double eta = work > 0.01 * total ? elapsed * std::max(0.0, total - work) / work : -1;
  std::snprintf(buf, sizeof buf, "[%zu/%zu done] CPU %3.0f%% ETA %s", finished_, o_.total_jobs,
                100 * cpu, eta >= 0 ? format_duration(eta).c_str() : "?");
  line_->update(buf + text, force);
}

/// Whether the message being handled comes from an actor of this process (a
/// dispatcher, a run, a local worker, a user's actor in front of the collector).
bool collector_state::from_here() const {
  return sent_from_this_process(self_);
}

/// Whether the message being handled comes from here or from the worker job `id`
/// was assigned to.
bool collector_state::from_assigned_worker(uint32_t id) const {
  if (from_here())
    return true;
  auto i = assigned_.find(id);
  return i != assigned_.end() && i->second.worker == self_->current_sender();
}

/// Drops a message a peer had no business sending; says so once.
void collector_state::refuse(const char* what, uint32_t id, const char* why) {
  if (refused_events_++ == 0) {
    const auto& sender = self_->current_sender();
    std::fprintf(stderr, "pnn: refused a %s for job %u from node %s (%s)\n", what, id,
                 sender ? caf::to_string(sender->node()).c_str() : "(anonymous)", why);
  }
}

void collector_state::assign(const job_spec& job, const worker_actor& worker) {
  if (!from_here())
    return refuse("job assignment", job.id, "only this process assigns jobs");
  assigned_[job.id] = assignment{worker.address(), job.out_dir};
}

void collector_state::progress(const job_progress& p) {
  if (!from_assigned_worker(p.id))
    return refuse("progress event", p.id);
  if (ended_.count(p.id))
    return;
  running_[p.id] = p;
  show(false);
}

/// A refused or dropped checkpoint answers an error: its worker then sends all its
/// steps with the next one (this one's steps never reached the steps file).
caf::error collector_state::checkpoint(const job_checkpoint& c) {
  constexpr int64_t max_epochs = int64_t{1} << 40; // more is a lie (and 2e would overflow)
  namespace fs = std::filesystem;
  auto refused = [](const char* why) {
    return make_error(error_code::invalid_argument, std::string("checkpoint refused: ") + why);
  };
  if (!from_assigned_worker(c.id)) {
    refuse("checkpoint", c.id);
    return refused("not from the job's worker");
  }
  if (auto i = assigned_.find(c.id); !from_here() && i->second.out_dir != c.out_dir) {
    refuse("checkpoint", c.id, "not for the job's own folder");
    return refused("not for the job's own folder");
  }
  std::error_code ec;
  const auto root = fs::weakly_canonical(o_.out_dir, ec);
  const auto dir = fs::weakly_canonical(c.out_dir, ec);
  auto [r, rest] = std::mismatch(root.begin(), root.end(), dir.begin(), dir.end());
  if (o_.out_dir.empty() || c.out_dir.empty() || ec || r != root.end() || rest == dir.end()
      || c.epoch < 0 || c.epoch > max_epochs) {
    if (refused_checkpoints_++ == 0)
      std::fprintf(stderr, "pnn: dropped a checkpoint for %s (outside %s)\n", c.out_dir.c_str(),
                   o_.out_dir.string().c_str());
    return refused("outside the run's folder");
  }
  // Positions: the end of epoch e is 2e, a point within epoch e + 1 is 2e + 1.
  auto& newest = newest_checkpoint_[dir.string()];
  const int64_t position = 2 * c.epoch + (c.mid_epoch ? 1 : 0);
  if (position < newest) {
    if (stale_checkpoints_++ == 0)
      std::fprintf(stderr, "pnn: dropped a stale checkpoint for %s (epoch %lld after %lld)\n",
                   c.out_dir.c_str(), static_cast<long long>(c.epoch),
                   static_cast<long long>(newest / 2));
    return refused("older than one already taken");
  }
  newest = position;
  if (!o_.store_checkpoint)
    return {};
  try {
    o_.store_checkpoint(dir, c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn: %s\n", e.what());
    return make_error(error_code::io_error, e.what());
  }
  return {};
}

void collector_state::result(const job_result& r) {
  if (!from_here())
    return refuse("result", r.id, "results come from whoever gave the job out, in this process");
  assigned_.erase(r.id);
  if (o_.on_result) {
    try {
      o_.on_result(r);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pnn: %s\n", e.what());
    }
  }
  running_.erase(r.id);
  ended_.insert(r.id);
  ++finished_;
  finished_cost_ += cost_of(r.id);
  line_->finish();
  if (!r.ok())
    ++failed_;
  print_result(r);
  show(true);
}

void collector_state::print_result(const job_result& r) const {
  if (o_.progress == "none")
    return; // quiet: results are in the files and the caller's report
  if (r.ok() && std::isfinite(r.val_accuracy) && r.val_accuracy >= 0) {
    // (CAF 0.17 turns a NaN into -1 on the wire: an accuracy < 0 means "none".)
    std::printf("done %s (%s, slot %d): validation accuracy %.4f, loss %.4f, %.1f s\n",
                label_of(r.id).c_str(), r.host.c_str(), r.slot, r.val_accuracy, r.val_loss,
                r.finished_at - r.started_at);
  } else if (r.ok()) { // an SGD share: no validation set
    std::printf("done %s (%s, slot %d): train loss %.4f, %.1f s\n", label_of(r.id).c_str(),
                r.host.c_str(), r.slot, r.train_loss, r.finished_at - r.started_at);
  } else {
    std::printf("%s %s (%s, slot %d): %s\n",
                r.code == error_code::interrupted ? "stopped" : "FAILED", label_of(r.id).c_str(),
                r.host.c_str(), r.slot, r.error.c_str());
  }
  std::fflush(stdout);
}

void collector_state::sample_cpu() {
  if (done_ || self_->current_sender() != self_->address())
    return; // only its own timer (a peer's extra ticks would start more timers)
  cpu_sample s;
  if (sampler_.sample(s))
    samples_.push_back(s);
  self_->delayed_send(self_, interval_, cpu_atom::value);
}

caf::result<double> collector_state::done() {
  if (!from_here())
    return caf::make_error(caf::sec::unexpected_message, "done: only the run ends its collector");
  cpu_sample s;
  if (!done_ && sampler_.sample(s))
    samples_.push_back(s);
  done_ = true;
  line_->finish();
  if (refused_events_ > 1)
    std::fprintf(stderr, "pnn: refused %zu messages from peers in all\n", refused_events_);
  if (o_.store_cpu) {
    try {
      o_.store_cpu(samples_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pnn: %s\n", e.what());
    }
  }
  double sum = 0;
  for (const auto& x : samples_)
    sum += x.utilization;
  return samples_.empty() ? 0.0 : sum / static_cast<double>(samples_.size());
}

collector_impl::behavior_type metric_collector(collector_state::pointer self,
                                               collector_options options) {
  self->state.init(self, std::move(options));
  return {
    [self](progress_atom, const job_progress& p) { self->state.progress(p); },
    [self](checkpoint_atom, const job_checkpoint& c) -> caf::result<void> {
      if (auto e = self->state.checkpoint(c))
        return e;
      return caf::unit;
    },
    [self](result_atom, const job_result& r) { self->state.result(r); },
    [self](assign_atom, const job_spec& job, const worker_actor& w) {
      self->state.assign(job, w);
    },
    [self](cpu_atom) { self->state.sample_cpu(); },
    [self](done_atom) -> caf::result<double> { return self->state.done(); },
  };
}

} // namespace

collector_actor spawn_collector(caf::actor_system& sys, collector_options options) {
  return sys.spawn(metric_collector, std::move(options));
}

} // namespace pnn
