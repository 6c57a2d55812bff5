#include <pnn/actors/fold_dispatcher.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

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

/// Puts out_dir/latest.pt (if any) into the job, for a worker on another host.
void attach_checkpoint(job_spec& job) {
  job.checkpoint.clear();
  if (job.out_dir.empty())
    return;
  std::ifstream in(std::filesystem::path(job.out_dir) / "latest.pt", std::ios::binary);
  if (!in)
    return;
  job.checkpoint.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

struct dispatcher_state::impl {
  struct slot {
    worker_actor worker;
    bool busy = false;
    uint32_t job = 0;
    int32_t threads = 0;
  };
  std::map<caf::actor_addr, slot> slots;
  std::vector<caf::actor_addr> slot_order; // in joining order
  std::deque<job_spec> queue;
  std::map<uint32_t, job_spec> running;
  std::map<uint32_t, int32_t> attempts;
  std::vector<job_result> results;
  size_t expected = 0;
  bool active = false;
  uint64_t orphan_waits = 0; // counts the waits for a worker; a stale reminder is ignored
  caf::typed_response_promise<std::vector<job_result>> promise;
  std::shared_ptr<std::function<void(const caf::actor_addr&, job_result)>> on_result;
};

dispatcher_state::dispatcher_state() : d(std::make_unique<impl>()) {
}
dispatcher_state::~dispatcher_state() = default;

dispatcher_actor::behavior_type
fold_dispatcher(dispatcher_actor::stateful_pointer<dispatcher_state> self, caf::actor sink,
                dispatcher_options options) {
  using impl = dispatcher_state::impl;
  // Hands queued jobs to idle slots (in joining order), then balances threads.
  auto assign = std::make_shared<std::function<void()>>();
  *assign = [self, options] {
    auto& d = *self->state.d;
    if (!d.active)
      return;
    for (auto& addr : d.slot_order) {
      if (d.queue.empty())
        break;
      auto& s = d.slots.at(addr);
      if (s.busy)
        continue;
      auto job = d.queue.front();
      d.queue.pop_front();
      job.threads = options.threads_per_job;
      if (job.resume && s.worker.node() != self->node())
        attach_checkpoint(job); // another host cannot read our folder
      s.busy = true;
      s.job = job.id;
      s.threads = job.threads;
      d.running[job.id] = job;
      ++d.attempts[job.id];
      self->request(s.worker, caf::infinite, run_atom::value, job)
        .then([self, addr](job_result& r) { (*self->state.d->on_result)(addr, std::move(r)); },
              [](caf::error&) {
                // The worker is gone: its down message re-queues the job.
              });
    }
    // Thread policy: base threads while jobs wait; in the tail, spread the cores.
    std::vector<impl::slot*> busy;
    for (auto& addr : d.slot_order)
      if (d.slots.at(addr).busy)
        busy.push_back(&d.slots.at(addr));
    bool tail = options.raise_threads_in_tail && d.queue.empty() && busy.size() < d.slots.size();
    auto shares = thread_shares(static_cast<int32_t>(busy.size()), options.cores,
                                options.threads_per_job, tail);
    for (size_t i = 0; i < busy.size(); ++i)
      if (busy[i]->threads != shares[i]) {
        busy[i]->threads = shares[i];
        self->send(busy[i]->worker, threads_atom::value, shares[i]);
      }
  };
  auto maybe_finish = std::make_shared<std::function<void()>>();
  *maybe_finish = [self] {
    auto& d = *self->state.d;
    if (d.active && d.results.size() == d.expected) {
      d.active = false;
      auto results = d.results;
      std::sort(results.begin(), results.end(),
                [](const job_result& a, const job_result& b) { return a.id < b.id; });
      d.promise.deliver(std::move(results));
    }
  };
  // A worker's job ended: free its slot, record, hand out the next job.
  auto on_result = std::make_shared<std::function<void(const caf::actor_addr&, job_result)>>();
  *on_result = [self, assign, maybe_finish, sink](const caf::actor_addr& addr, job_result r) {
    auto& d = *self->state.d;
    auto i = d.slots.find(addr);
    if (i == d.slots.end() || !i->second.busy || i->second.job != r.id)
      return; // stale: the slot was lost and its job re-queued meanwhile
    i->second.busy = false;
    i->second.threads = 0;
    d.running.erase(r.id);
    d.results.push_back(r);
    if (sink)
      caf::anon_send(sink, result_atom::value, r);
    (*assign)();
    (*maybe_finish)();
  };
  self->state.d->on_result = on_result;
  // No worker left while jobs remain: fail now, or give hosts time to (re)join.
  auto orphaned = std::make_shared<std::function<void()>>();
  *orphaned = [self, options] {
    auto& d = *self->state.d;
    if (options.wait_for_workers <= 0) {
      d.active = false;
      d.promise.deliver(caf::make_error(caf::sec::runtime_error, "every worker was lost"));
      return;
    }
    auto wait = std::chrono::milliseconds(static_cast<int64_t>(options.wait_for_workers * 1000));
    self->delayed_send(self, wait, orphan_atom::value, ++d.orphan_waits);
  };
  self->set_down_handler([self, assign, maybe_finish, orphaned, options,
                          sink](const caf::down_msg& msg) {
    auto& d = *self->state.d;
    auto i = d.slots.find(msg.source);
    if (i == d.slots.end())
      return;
    auto s = i->second;
    d.slots.erase(i);
    d.slot_order.erase(std::remove(d.slot_order.begin(), d.slot_order.end(), msg.source),
                       d.slot_order.end());
    if (s.busy) {
      auto job = d.running.at(s.job);
      d.running.erase(s.job);
      if (d.attempts[job.id] >= options.max_attempts) {
        job_result r;
        r.id = job.id;
        r.model = job.model;
        r.scheduler = job.scheduler;
        r.fold = job.fold;
        r.error = "worker lost " + std::to_string(d.attempts[job.id]) + " times";
        d.results.push_back(r);
        if (sink)
          caf::anon_send(sink, result_atom::value, r);
      } else {
        job.resume = true; // continue from its latest checkpoint, if any
        d.queue.push_front(job);
      }
    }
    if (d.active && d.slots.empty() && d.results.size() < d.expected) {
      (*orphaned)();
      return;
    }
    (*assign)();
    (*maybe_finish)();
  });
  return {
    [=](add_atom, worker_actor w) {
      auto& d = *self->state.d;
      auto addr = w.address();
      if (d.slots.count(addr))
        return;
      self->monitor(w);
      ++d.orphan_waits; // a worker came: any pending wait is over
      d.slots.emplace(addr, impl::slot{w});
      d.slot_order.push_back(addr);
      (*assign)();
    },
    [=](orphan_atom, uint64_t wait) {
      auto& d = *self->state.d;
      if (wait != d.orphan_waits || !d.active || !d.slots.empty())
        return; // a worker joined meanwhile
      d.active = false;
      d.promise.deliver(caf::make_error(
        caf::sec::runtime_error, "every worker was lost and none joined within "
                                   + std::to_string(options.wait_for_workers) + " s"));
    },
    [=](run_atom, std::vector<job_spec> jobs) -> caf::result<std::vector<job_result>> {
      auto& d = *self->state.d;
      if (d.active)
        return caf::make_error(caf::sec::runtime_error, "an experiment is already running");
      d.results.clear();
      d.attempts.clear();
      d.expected = jobs.size();
      for (auto& j : longest_first(std::move(jobs)))
        d.queue.push_back(std::move(j));
      d.active = true;
      d.promise = self->make_response_promise<std::vector<job_result>>();
      auto promise = d.promise;
      (*assign)();
      (*maybe_finish)();
      if (d.active && d.slots.empty() && d.expected > 0 && options.wait_for_workers > 0)
        (*orphaned)(); // no worker yet: start the clock on their joining
      return promise;
    },
  };
}

} // namespace pnn
