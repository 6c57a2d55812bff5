#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/actors/network.hpp>

#include <pnn/metrics.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <set>

namespace pnn {

std::vector<job_spec> longest_first(std::vector<job_spec> jobs) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const job_spec& a, const job_spec& b) {
    return a.cost != b.cost ? a.cost > b.cost : a.id < b.id;
  });
  return jobs;
}

std::vector<int32_t> thread_shares(int32_t running, int32_t cores, int32_t base, bool tail) {
  std::vector<int32_t> shares(static_cast<size_t>(std::max(0, running)), std::max(1, base));
  if (!tail || running <= 0)
    return shares;
  const int32_t each = std::max(1, cores / running);
  int32_t extra = cores > running ? cores % running : 0;
  for (auto& s : shares) {
    s = std::max(s, each + (extra > 0 ? 1 : 0));
    if (extra > 0)
      --extra;
  }
  return shares;
}

namespace {

/// The dispatcher's own reminder: "you have had no worker since wait number N".
using orphan_atom = caf::atom_constant<caf::atom("orphan")>;

/// The dispatcher as it sees itself: its public interface plus its own reminders.
using dispatcher_impl = dispatcher_actor::extend<caf::reacts_to<orphan_atom, uint64_t>>;

class dispatcher_state {
public:
  static inline const char* name = "pnn.fold_dispatcher";
  using pointer = dispatcher_impl::stateful_pointer<dispatcher_state>;

  void init(pointer self, event_sink_actor sink, dispatcher_options options) {
    self_ = self;
    sink_ = std::move(sink);
    options_ = std::move(options);
  }

  caf::result<std::vector<job_result>> run(std::vector<job_spec> jobs);
  void add(worker_actor w);
  void worker_down(const caf::down_msg& msg);
  void wait_over(uint64_t wait);
  void cancel(uint32_t id);
  void interrupt();

private:
  struct slot {
    worker_actor worker;
    bool busy = false;
    uint32_t job = 0;
    int32_t threads = 0;
  };

  void assign();
  void send_job(const caf::actor_addr& addr, slot& s, job_spec job);
  void balance_threads();
  void on_result(const caf::actor_addr& addr, uint32_t id, job_result r);
  void on_error(const caf::actor_addr& addr, uint32_t id, const caf::error& e);
  void requeue_or_fail(uint32_t id, const std::string& why);
  static std::string refused_files(const record_files& files);
  void record(job_result r);
  bool paused(const job_spec& job, job_result& r);
  void apply(const pruning_decisions& d);
  void end_parked(uint32_t id, job_result r);
  template <class Decide>
  void ask_policy(Decide decide);
  void settle();
  void orphaned();
  void maybe_finish();
  void fail(std::string why);

  pointer self_ = nullptr;
  event_sink_actor sink_;
  dispatcher_options options_;
  std::map<caf::actor_addr, slot> slots_;
  std::vector<caf::actor_addr> slot_order_; ///< in joining order
  std::deque<job_spec> queue_;
  std::map<uint32_t, job_spec> running_;
  std::map<uint32_t, int32_t> attempts_;
  /// Pruning: jobs waiting at a pause (their last result), every job as given (to go
  /// on from a pause), epochs each has done and the wall-clock span of its parts.
  std::map<uint32_t, job_result> parked_;
  std::map<uint32_t, job_spec> given_;
  std::map<uint32_t, int64_t> epochs_done_;
  std::map<uint32_t, std::vector<double>> segments_;
  std::set<uint32_t> cancelled_; ///< cancelled while running (a pause then ends it)
  std::vector<job_result> results_;
  size_t expected_ = 0;
  bool active_ = false;
  bool interrupted_ = false; ///< no job starts any more
  uint64_t orphan_waits_ = 0; ///< counts the waits for a worker; a stale reminder is ignored
  caf::typed_response_promise<std::vector<job_result>> promise_;
};

caf::result<std::vector<job_result>> dispatcher_state::run(std::vector<job_spec> jobs) {
  if (active_)
    return caf::make_error(caf::sec::runtime_error, "an experiment is already running");
  results_.clear();
  attempts_.clear();
  parked_.clear();
  given_.clear();
  cancelled_.clear();
  epochs_done_.clear();
  segments_.clear();
  for (const auto& j : jobs)
    given_[j.id] = j;
  interrupted_ = false;
  expected_ = jobs.size();
  for (auto& j : longest_first(std::move(jobs)))
    queue_.push_back(std::move(j));
  active_ = true;
  promise_ = self_->make_response_promise<std::vector<job_result>>();
  auto promise = promise_;
  assign();
  maybe_finish();
  if (active_ && slots_.empty() && expected_ > 0 && options_.wait_for_workers > 0)
    orphaned(); // no worker yet: start the clock on their joining
  return promise;
}

void dispatcher_state::add(worker_actor w) {
  auto addr = w.address();
  if (slots_.count(addr))
    return;
  self_->monitor(w);
  ++orphan_waits_; // a worker came: any pending wait is over
  slots_.emplace(addr, slot{w});
  slot_order_.push_back(addr);
  assign();
}

/// Hands queued jobs to idle slots (in joining order), then balances threads.
void dispatcher_state::assign() {
  if (!active_)
    return;
  for (auto& addr : slot_order_) {
    if (queue_.empty())
      break;
    auto& s = slots_.at(addr);
    if (s.busy)
      continue;
    auto job = queue_.front();
    queue_.pop_front();
    send_job(addr, s, std::move(job));
  }
  balance_threads();
}

void dispatcher_state::send_job(const caf::actor_addr& addr, slot& s, job_spec job) {
  job.threads = options_.threads_per_job;
  if (options_.pruning)
    job.pause_at = options_.pruning->pause_at(job, epochs_done_[job.id]);
  s.busy = true;
  s.job = job.id;
  s.threads = job.threads;
  running_[job.id] = job;
  ++attempts_[job.id];
  if (sink_) // before the job: the sink takes the job's events from this worker only
    self_->send(sink_, assign_atom::value, job, s.worker);
  auto answer = [this, addr, id = job.id](job_result& r) {
    if (self_->current_sender() != addr)
      return; // not the worker's own answer
    on_result(addr, id, std::move(r));
  };
  auto failed = [this, addr, id = job.id](caf::error& e) { on_error(addr, id, e); };
  // Another host cannot read our folder: a job resumed there takes its checkpoint.
  std::optional<job_checkpoint> checkpoint;
  if (job.resume && s.worker.node() != self_->node() && options_.checkpoint_of)
    checkpoint = options_.checkpoint_of(job);
  if (checkpoint)
    self_->request(s.worker, caf::infinite, run_atom::value, job, std::move(*checkpoint))
      .then(answer, failed);
  else
    self_->request(s.worker, caf::infinite, run_atom::value, job).then(answer, failed);
}

/// Thread policy: base threads while jobs wait; in the tail, spread the cores.
void dispatcher_state::balance_threads() {
  std::vector<slot*> busy;
  for (auto& addr : slot_order_)
    if (slots_.at(addr).busy)
      busy.push_back(&slots_.at(addr));
  const bool tail = options_.raise_threads_in_tail && queue_.empty() && busy.size() < slots_.size();
  auto shares = thread_shares(static_cast<int32_t>(busy.size()), options_.cores,
                              options_.threads_per_job, tail);
  for (size_t i = 0; i < busy.size(); ++i)
    if (busy[i]->threads != shares[i]) {
      busy[i]->threads = shares[i];
      self_->send(busy[i]->worker, threads_atom::value, shares[i]);
    }
}

/// A worker's job ended: free its slot, record, hand out the next job. The job is
/// the one this dispatcher gave the worker, whatever the result says: its identity
/// (id, model, scheduler, fold) comes from the dispatch record, not from the peer.
void dispatcher_state::on_result(const caf::actor_addr& addr, uint32_t id, job_result r) {
  auto i = slots_.find(addr);
  if (i == slots_.end() || !i->second.busy || i->second.job != id)
    return; // stale: the slot was lost and its job re-queued meanwhile
  i->second.busy = false;
  i->second.threads = 0;
  const auto job = running_.at(id);
  running_.erase(id);
  if (r.id != id) {
    auto claimed = r.id;
    r = failed_job(id, error_code::run_failed,
                   "the worker answered job " + std::to_string(id) + " with a result for job "
                     + std::to_string(claimed));
  }
  if (auto why = refused_files(r.files); !why.empty()) {
    auto claimed = std::move(r);
    r = failed_job(id, error_code::run_failed, why);
    r.host = claimed.host;
    r.slot = claimed.slot;
  }
  r.model = job.model;
  r.scheduler = job.scheduler;
  r.fold = job.fold;
  if (!paused(job, r))
    record(std::move(r));
  settle();
}

/// Whether `r` is `job` stopping at its pause (then the pruning policy decides what
/// follows) rather than its end.
bool dispatcher_state::paused(const job_spec& job, job_result& r) {
  if (!options_.pruning || !r.ok() || job.pause_at <= 0 || r.epochs_done >= job.epochs)
    return false;
  if (r.epochs_done != job.pause_at) { // a worker that did not do what it was given
    auto claimed = r.epochs_done;
    r = failed_job(job, error_code::run_failed,
                   "paused after epoch " + std::to_string(claimed) + ", given "
                     + std::to_string(job.pause_at));
    return false;
  }
  epochs_done_[job.id] = r.epochs_done;
  parked_[job.id] = r;
  if (cancelled_.count(job.id)) { // cancelled as it paused
    end_parked(job.id, failed_job(job, error_code::cancelled, "cancelled"));
    return true;
  }
  if (!interrupted_)
    ask_policy([&] { return options_.pruning->paused(job, r); });
  return true;
}

/// A paused job ends with `r` instead of the result it paused with (interrupted,
/// cancelled), keeping where and when that part ran and its epochs.
void dispatcher_state::end_parked(uint32_t id, job_result r) {
  auto i = parked_.find(id);
  if (i == parked_.end())
    return;
  // Where it was when it paused (a failed_job result knows none of it).
  r.host = i->second.host;
  r.slot = i->second.slot;
  r.started_at = i->second.started_at;
  r.finished_at = i->second.finished_at;
  r.epochs_done = i->second.epochs_done;
  parked_.erase(i);
  record(std::move(r));
}

/// The policy's decisions applied; a policy that throws (its journal cannot be
/// written) fails the run, which must not go on without its record.
template <class Decide>
void dispatcher_state::ask_policy(Decide decide) {
  if (!active_)
    return; // the run failed: nothing more goes on, nor into the policy's journal
  try {
    apply(decide());
  } catch (const std::exception& e) {
    fail(std::string{"pruning: "} + e.what());
  }
}

/// Paused jobs go on (before any job not started yet) or end where they are.
void dispatcher_state::apply(const pruning_decisions& d) {
  for (auto id = d.resume.rbegin(); id != d.resume.rend(); ++id) {
    auto i = parked_.find(*id);
    if (i == parked_.end())
      continue;
    auto& parts = segments_[*id]; // the part that ended at the pause
    parts.push_back(i->second.started_at);
    parts.push_back(i->second.finished_at);
    parked_.erase(i);
    auto job = given_.at(*id);
    job.resume = true; // from the checkpoint it saved at its pause
    attempts_[*id] = 0;
    queue_.push_front(std::move(job));
  }
  for (auto id : d.stop) {
    auto i = parked_.find(id);
    if (i == parked_.end())
      continue;
    auto r = std::move(i->second);
    parked_.erase(i);
    record(std::move(r));
  }
}

/// After any change: queued jobs to idle slots; with nothing running or queued but
/// paused jobs, the policy's last word on them (and every one it leaves waiting
/// ends where it is); then the run's end, when every job has its result.
void dispatcher_state::settle() {
  assign();
  while (active_ && options_.pruning && queue_.empty() && running_.empty() && !parked_.empty()) {
    if (interrupted_) {
      std::vector<std::pair<uint32_t, int64_t>> waiting;
      for (const auto& [id, r] : parked_)
        waiting.emplace_back(id, r.epochs_done);
      for (auto [id, epoch] : waiting)
        end_parked(id, failed_job(given_.at(id), error_code::interrupted,
                                  "paused after epoch " + std::to_string(epoch)
                                    + " when the run was interrupted"));
      break;
    }
    std::vector<uint32_t> waiting;
    for (const auto& [id, r] : parked_)
      waiting.push_back(id);
    ask_policy([&] { return options_.pruning->stalled(waiting); });
    if (!active_)
      return;
    if (queue_.empty()) { // nothing goes on: the rest ends where it is
      pruning_decisions rest;
      for (const auto& [id, r] : parked_)
        rest.stop.push_back(id);
      apply(rest);
    }
    assign();
  }
  maybe_finish();
}

/// Why a job's record files cannot be taken ("" if they can): another host sends
/// back the files a job writes (training::record_file_names), each once, and nothing
/// else; a result with any other file is refused whole.
std::string dispatcher_state::refused_files(const record_files& files) {
  const auto& allowed = training::record_file_names();
  std::set<std::string> seen;
  std::string bad;
  for (const auto& name : files.names)
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()
        || !seen.insert(name).second)
      bad += (bad.empty() ? "'" : ", '") + name.substr(0, 64) + "'";
  if (files.names.size() != files.contents.size())
    bad += (bad.empty() ? "" : "; ") + std::to_string(files.names.size()) + " names for "
      + std::to_string(files.contents.size()) + " contents";
  return bad.empty() ? "" : "refused the result: record files not written by a job: " + bad;
}

/// A live worker answered with an error instead of a result (a dead one's down
/// message comes too; whichever comes first frees the slot): the job goes back to
/// the queue, to resume from its checkpoint, until it has used its attempts.
void dispatcher_state::on_error(const caf::actor_addr& addr, uint32_t id, const caf::error& e) {
  auto i = slots_.find(addr);
  if (i == slots_.end() || !i->second.busy || i->second.job != id)
    return;
  i->second.busy = false;
  i->second.threads = 0;
  requeue_or_fail(id, "worker answered with an error: " + self_->system().render(e));
  settle();
}

/// Job `id` did not end on its worker: back to the queue front, or failed after
/// max_attempts.
void dispatcher_state::requeue_or_fail(uint32_t id, const std::string& why) {
  auto job = running_.at(id);
  running_.erase(id);
  if (interrupted_) {
    record(failed_job(job, error_code::interrupted, why + " after the run was interrupted"));
  } else if (attempts_[id] >= options_.max_attempts) {
    record(failed_job(job, error_code::worker_lost,
                      why + " (" + std::to_string(attempts_[id]) + " attempts)"));
  } else {
    job.resume = true; // continue from its latest checkpoint, if any
    queue_.push_front(job);
  }
}

void dispatcher_state::record(job_result r) {
  if (auto parts = segments_.find(r.id); parts != segments_.end())
    r.segments = parts->second;
  if (sink_)
    self_->send(sink_, result_atom::value, r);
  results_.push_back(std::move(r));
}

void dispatcher_state::worker_down(const caf::down_msg& msg) {
  auto i = slots_.find(msg.source);
  if (i == slots_.end())
    return;
  auto s = i->second;
  slots_.erase(i);
  slot_order_.erase(std::remove(slot_order_.begin(), slot_order_.end(), msg.source),
                    slot_order_.end());
  if (s.busy)
    requeue_or_fail(s.job, "worker lost");
  settle(); // (with only paused jobs left, the policy may end them all)
  if (active_ && slots_.empty() && results_.size() < expected_)
    orphaned();
}

/// No worker left while jobs remain: fail now, or give hosts time to (re)join.
void dispatcher_state::orphaned() {
  if (options_.wait_for_workers <= 0) {
    fail("every worker was lost");
    return;
  }
  auto wait = std::chrono::milliseconds(static_cast<int64_t>(options_.wait_for_workers * 1000));
  self_->delayed_send(self_, wait, orphan_atom::value, ++orphan_waits_);
}

void dispatcher_state::wait_over(uint64_t wait) {
  if (wait != orphan_waits_ || !active_ || !slots_.empty())
    return; // a worker joined meanwhile
  fail("every worker was lost and none joined within " + std::to_string(options_.wait_for_workers)
       + " s");
}

void dispatcher_state::cancel(uint32_t id) {
  for (auto& addr : slot_order_) {
    auto& s = slots_.at(addr);
    if (s.busy && s.job == id) {
      self_->send(s.worker, cancel_atom::value); // its result comes back as usual
      cancelled_.insert(id); // (or a pause, when it was just reaching one)
      return;
    }
  }
  if (parked_.count(id)) {
    end_parked(id, failed_job(given_.at(id), error_code::cancelled, "cancelled while paused"));
    settle();
    return;
  }
  auto queued =
    std::find_if(queue_.begin(), queue_.end(), [id](const job_spec& j) { return j.id == id; });
  if (queued == queue_.end())
    return;
  auto r = failed_job(*queued, error_code::cancelled, "cancelled");
  queue_.erase(queued);
  record(std::move(r));
  settle();
}

/// The run was interrupted: queued jobs end unstarted, running ones save where they
/// are and end (their results come back as usual), nothing new starts.
void dispatcher_state::interrupt() {
  if (!active_ || interrupted_)
    return;
  interrupted_ = true;
  while (!queue_.empty()) {
    auto job = queue_.front();
    queue_.pop_front();
    record(failed_job(job, error_code::interrupted, "not started: the run was interrupted"));
  }
  for (auto& addr : slot_order_)
    if (slots_.at(addr).busy)
      self_->send(slots_.at(addr).worker, interrupt_atom::value);
  settle(); // paused jobs end once nothing runs
}

void dispatcher_state::fail(std::string why) {
  if (!active_)
    return;
  active_ = false;
  promise_.deliver(caf::make_error(caf::sec::runtime_error, std::move(why)));
}

void dispatcher_state::maybe_finish() {
  // Where the run is, for --metrics-port (every change ends here, through settle).
  auto& m = metrics();
  m.jobs_queued = static_cast<int64_t>(queue_.size());
  m.jobs_running = static_cast<int64_t>(running_.size());
  m.jobs_paused = static_cast<int64_t>(parked_.size());
  const auto ok = std::count_if(results_.begin(), results_.end(),
                                [](const job_result& r) { return r.ok(); });
  m.jobs_done = static_cast<int64_t>(ok);
  m.jobs_failed = static_cast<int64_t>(results_.size()) - static_cast<int64_t>(ok);
  if (!active_ || results_.size() != expected_)
    return;
  active_ = false;
  auto results = results_;
  std::sort(results.begin(), results.end(),
            [](const job_result& a, const job_result& b) { return a.id < b.id; });
  promise_.deliver(std::move(results));
}

/// Only the run that owns a dispatcher (or a host watcher beside it) adds workers,
/// runs, cancels and interrupts: see sent_from_this_process.
dispatcher_impl::behavior_type fold_dispatcher(dispatcher_state::pointer self,
                                               event_sink_actor sink, dispatcher_options options) {
  self->state.init(self, std::move(sink), std::move(options));
  self->set_down_handler([self](const caf::down_msg& msg) { self->state.worker_down(msg); });
  return {
    [self](add_atom, worker_actor w) {
      if (sent_from_this_process(self))
        self->state.add(std::move(w));
    },
    [self](run_atom, std::vector<job_spec> jobs) -> caf::result<std::vector<job_result>> {
      if (!sent_from_this_process(self))
        return caf::make_error(caf::sec::unexpected_message, "run: only from this process");
      return self->state.run(std::move(jobs));
    },
    [self](cancel_atom, uint32_t id) {
      if (sent_from_this_process(self))
        self->state.cancel(id);
    },
    [self](interrupt_atom) {
      if (sent_from_this_process(self))
        self->state.interrupt();
    },
    [self](orphan_atom, uint64_t wait) {
      if (self->current_sender() == self->address())
        self->state.wait_over(wait);
    },
  };
}

} // namespace

dispatcher_actor spawn_dispatcher(caf::actor_system& sys, event_sink_actor sink,
                                  dispatcher_options options) {
  return sys.spawn(fold_dispatcher, std::move(sink), std::move(options));
}

} // namespace pnn
