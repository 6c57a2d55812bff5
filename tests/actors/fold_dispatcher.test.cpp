#include <torch/torch.h>

#define CAF_SUITE actors.fold_dispatcher
#include <caf/test/dsl.hpp>

#include "actor_util.hpp"

#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/experiments/kfold.hpp>

#include <caf/all.hpp>

using namespace pnn;

namespace {

/// A worker that records what it is told and finishes its job when the test sends
/// it cancel_atom (with the outcome the test put in next_ok).
struct fake_worker_state {
  std::vector<job_spec> jobs;
  std::vector<int32_t> threads;
  caf::typed_response_promise<job_result> promise;
  bool next_ok = true;
  /// Answer with a result that claims another identity (a rogue host's worker).
  bool forge = false;
  uint32_t forged_id = 0;
  /// Answer with record files a job does not write.
  bool forge_files = false;
  bool interrupted = false; ///< it was told to save and stop
  /// Answer with an error instead of a result (a live worker whose job broke).
  bool answer_error = false;
  static inline const char* name = "fake_worker";
};

using fake_pointer = worker_actor::stateful_pointer<fake_worker_state>;

worker_actor::behavior_type fake_worker(fake_pointer self) {
  return {
    [=](run_atom, const job_spec& j) -> caf::result<job_result> {
      self->state.jobs.push_back(j);
      self->state.promise = self->make_response_promise<job_result>();
      return self->state.promise;
    },
    [=](run_atom, const job_spec& j, const job_checkpoint&) -> caf::result<job_result> {
      self->state.jobs.push_back(j); // a remote resume; not used by these tests
      self->state.promise = self->make_response_promise<job_result>();
      return self->state.promise;
    },
    [=](run_atom, const job_spec&, const sgd_link&) -> caf::result<job_result> {
      return job_result{}; // SGD shares are not the dispatcher's business
    },
    [=](threads_atom, int32_t n) { self->state.threads.push_back(n); },
    [=](interrupt_atom) {
      auto& s = self->state;
      s.interrupted = true;
      s.promise.deliver(failed_job(s.jobs.back().id, error_code::interrupted, "interrupted"));
    },
    [=](cancel_atom) {
      auto& s = self->state;
      if (s.answer_error) {
        s.promise.deliver(caf::make_error(caf::sec::runtime_error, "broken"));
        return;
      }
      job_result r;
      r.id = s.forge ? s.forged_id : s.jobs.back().id;
      r.code = s.next_ok ? error_code::none : error_code::run_failed;
      r.error = s.next_ok ? "" : "boom";
      if (s.forge_files) {
        r.files.names = {"steps.csv", "../../time.json"};
        r.files.contents = {"s", "t"};
      }
      if (s.forge) {
        r.model = "..";
        r.scheduler = "..";
        r.fold = -31337;
      }
      s.promise.deliver(r);
    },
  };
}

struct fixture : test_coordinator_fixture<> {
  std::shared_ptr<test::sink_record> events = std::make_shared<test::sink_record>();
  std::vector<job_result>& sunk = events->results;
  event_sink_actor sink;
  dispatcher_actor dispatcher;

  fixture() {
    sink = test::spawn_recording_sink(sys, events);
    dispatcher_options o;
    o.cores = 2;
    o.threads_per_job = 1;
    dispatcher = spawn_dispatcher(sys, sink, o);
    run();
  }

  ~fixture() {
    anon_send_exit(dispatcher, caf::exit_reason::user_shutdown);
    anon_send_exit(sink, caf::exit_reason::user_shutdown);
    run();
  }

  worker_actor add_worker() {
    auto w = sys.spawn(fake_worker);
    self->send(dispatcher, add_atom::value, w);
    run();
    return w;
  }

  fake_worker_state& state(const worker_actor& w) {
    return deref<caf::stateful_actor<fake_worker_state, worker_actor::base>>(w).state;
  }

  void finish(const worker_actor& w, bool ok = true) {
    state(w).next_ok = ok;
    caf::anon_send(w, cancel_atom::value);
    run();
  }

  static std::vector<job_spec> jobs_with_costs(std::vector<double> costs) {
    std::vector<job_spec> jobs;
    for (size_t i = 0; i < costs.size(); ++i) {
      job_spec j;
      j.id = static_cast<uint32_t>(i);
      j.cost = costs[i];
      jobs.push_back(j);
    }
    return jobs;
  }

  std::shared_ptr<bool> failed = std::make_shared<bool>(false);

  /// A client actor sends run to the dispatcher; the reply lands in `results` once
  /// all jobs end (or `failed` turns true).
  std::shared_ptr<std::vector<job_result>> start(std::vector<job_spec> jobs) {
    auto results = std::make_shared<std::vector<job_result>>();
    auto d = dispatcher;
    auto f = failed;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(d, caf::infinite, run_atom::value, jobs)
        .then([results](std::vector<job_result>& r) { *results = std::move(r); },
              [f](caf::error&) { *f = true; });
    });
    sched.run(); // messages only: a dispatcher's wait for workers stays pending
    return results;
  }
};

} // namespace

CAF_TEST(jobs expand to models x schedulers x folds in one list) {
  kfold_options o;
  o.models = {"lenet5", "alexnet"};
  o.schedulers = {"cosine", "warm"};
  o.folds = 3;
  o.out = "runs/x";
  auto jobs = expand_jobs(o);
  CAF_REQUIRE_EQUAL(jobs.size(), 12u);
  for (uint32_t i = 0; i < 12; ++i)
    CAF_CHECK_EQUAL(jobs[i].id, i);
  CAF_CHECK_EQUAL(jobs[0].model, "lenet5");
  CAF_CHECK_EQUAL(jobs[0].scheduler, "cosine");
  CAF_CHECK_EQUAL(jobs[2].fold, 2);
  CAF_CHECK_EQUAL(jobs[3].scheduler, "warm");
  CAF_CHECK_EQUAL(jobs[11].model, "alexnet");
  CAF_CHECK_EQUAL(jobs[11].out_dir, "runs/x/alexnet/warm/fold2");
  for (const auto& j : jobs)
    CAF_CHECK_EQUAL(j.folds, 3);
}

CAF_TEST(jobs are ordered longest first with ties by id) {
  auto sorted = longest_first(fixture::jobs_with_costs({1, 5, 3, 5, 0}));
  std::vector<uint32_t> ids;
  for (const auto& j : sorted)
    ids.push_back(j.id);
  CAF_CHECK(ids == (std::vector<uint32_t>{1, 3, 2, 0, 4}));
}

CAF_TEST(thread shares never exceed the cores and spread them in the tail) {
  CAF_CHECK(thread_shares(2, 2, 1, false) == (std::vector<int32_t>{1, 1}));
  CAF_CHECK(thread_shares(2, 2, 1, true) == (std::vector<int32_t>{1, 1}));
  CAF_CHECK(thread_shares(1, 2, 1, true) == (std::vector<int32_t>{2}));
  CAF_CHECK(thread_shares(1, 2, 1, false) == (std::vector<int32_t>{1}));
  CAF_CHECK(thread_shares(3, 8, 1, true) == (std::vector<int32_t>{3, 3, 2}));
  CAF_CHECK(thread_shares(0, 8, 1, true).empty());
}

CAF_TEST_FIXTURE_SCOPE(dispatcher_tests, fixture)

CAF_TEST(free slots get the longest jobs first and every job ends once) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({1, 3, 2}));
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 1u);
  CAF_REQUIRE_EQUAL(state(b).jobs.size(), 1u);
  CAF_CHECK_EQUAL(state(a).jobs[0].id, 1u); // cost 3
  CAF_CHECK_EQUAL(state(b).jobs[0].id, 2u); // cost 2
  finish(b);
  CAF_REQUIRE_EQUAL(state(b).jobs.size(), 2u);
  CAF_CHECK_EQUAL(state(b).jobs[1].id, 0u);
  CAF_CHECK(results->empty());
  finish(a);
  finish(b);
  CAF_REQUIRE_EQUAL(results->size(), 3u);
  for (uint32_t i = 0; i < 3; ++i)
    CAF_CHECK_EQUAL((*results)[i].id, i);
  CAF_CHECK_EQUAL(sunk.size(), 3u);
}

CAF_TEST(a busy slot gets no second job) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1, 1, 1}));
  CAF_CHECK_EQUAL(state(a).jobs.size(), 1u);
  finish(a);
  CAF_CHECK_EQUAL(state(a).jobs.size(), 2u);
  finish(a);
  finish(a);
  CAF_CHECK_EQUAL(results->size(), 3u);
}

CAF_TEST(the job of a worker that dies is queued again and resumed elsewhere) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({2, 1}));
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 1u);
  auto lost = state(a).jobs[0].id;
  anon_send_exit(a, caf::exit_reason::kill);
  run();
  finish(b); // b's own job; then it receives a's
  CAF_REQUIRE_EQUAL(state(b).jobs.size(), 2u);
  CAF_CHECK_EQUAL(state(b).jobs[1].id, lost);
  CAF_CHECK(state(b).jobs[1].resume);
  finish(b);
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK((*results)[0].ok() && (*results)[1].ok());
}

CAF_TEST(a worker joining a running experiment receives queued jobs) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1, 1}));
  CAF_CHECK_EQUAL(state(a).jobs.size(), 1u);
  auto b = add_worker();
  CAF_CHECK_EQUAL(state(b).jobs.size(), 1u);
  finish(a);
  finish(b);
  CAF_CHECK_EQUAL(results->size(), 2u);
}

CAF_TEST(idle cores go to the running job once the queue is empty) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({2, 1}));
  // Both slots busy: one thread each, no change sent.
  CAF_CHECK(state(a).threads.empty());
  CAF_CHECK(state(b).threads.empty());
  CAF_CHECK_EQUAL(state(a).jobs[0].threads, 1);
  finish(b);
  // Queue empty, b idle: a's job gets both cores.
  CAF_REQUIRE_EQUAL(state(a).threads.size(), 1u);
  CAF_CHECK_EQUAL(state(a).threads[0], 2);
  finish(a);
  CAF_CHECK_EQUAL(results->size(), 2u);
}

CAF_TEST(a failed job is reported with its error and the rest go on) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1, 1}));
  finish(a, false);
  CAF_CHECK_EQUAL(state(a).jobs.size(), 2u);
  finish(a, true);
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  int failed = 0;
  for (const auto& r : *results)
    if (!r.ok()) {
      ++failed;
      CAF_CHECK_EQUAL(r.error, "boom");
    }
  CAF_CHECK_EQUAL(failed, 1);
}

CAF_TEST(a job cancelled by id ends where it runs and a queued one never starts) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({2, 1}));
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 1u);
  CAF_CHECK_EQUAL(state(a).jobs[0].id, 0u);
  // Job 1 waits in the queue: cancelling it records it at once, without a worker.
  self->send(dispatcher, cancel_atom::value, uint32_t{1});
  run();
  CAF_REQUIRE_EQUAL(sunk.size(), 1u);
  CAF_CHECK_EQUAL(sunk[0].id, 1u);
  CAF_CHECK_EQUAL(sunk[0].code, error_code::cancelled);
  // Job 0 runs on a: the dispatcher tells that worker (the fake answers a cancel by
  // ending its job).
  self->send(dispatcher, cancel_atom::value, uint32_t{0});
  run();
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK_EQUAL(state(a).jobs.size(), 1u); // job 1 never reached a worker
  CAF_CHECK_EQUAL((*results)[1].code, error_code::cancelled);
  // A job that already ended is not cancelled again.
  self->send(dispatcher, cancel_atom::value, uint32_t{0});
  run();
  CAF_CHECK_EQUAL(sunk.size(), 2u);
}

CAF_TEST(a result names the job the dispatcher gave out whatever the worker claims) {
  auto a = add_worker();
  auto jobs = jobs_with_costs({2, 1});
  for (auto& j : jobs) {
    j.model = "lenet5";
    j.scheduler = "cosine";
    j.fold = static_cast<int32_t>(j.id);
  }
  auto results = start(jobs);
  // The sink heard whom the job went to before the job was sent.
  CAF_REQUIRE_EQUAL(events->assigned.size(), 1u);
  CAF_CHECK_EQUAL(events->assigned[0].first.id, 0u);
  CAF_CHECK(events->assigned[0].second == a);
  // Job 0's worker answers as job 0 but with names and a fold made up to escape
  // the run's folder: the result keeps job 0's own names.
  state(a).forge = true;
  state(a).forged_id = 0;
  finish(a);
  CAF_REQUIRE_EQUAL(sunk.size(), 1u);
  CAF_CHECK(sunk[0].ok());
  CAF_CHECK_EQUAL(sunk[0].model, "lenet5");
  CAF_CHECK_EQUAL(sunk[0].scheduler, "cosine");
  CAF_CHECK_EQUAL(sunk[0].fold, 0);
  // Job 1's answer claims job 0 (already done): it fails job 1, it is not taken as
  // a second result of job 0.
  finish(a);
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK((*results)[0].ok());
  CAF_CHECK_EQUAL((*results)[1].id, 1u);
  CAF_CHECK(!(*results)[1].ok());
  CAF_CHECK_EQUAL((*results)[1].fold, 1);
  CAF_CHECK_NOT_EQUAL((*results)[1].error.find("result for job 0"), std::string::npos);
}

CAF_TEST(a result carrying files a job does not write is refused whole) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1}));
  state(a).forge_files = true;
  finish(a);
  CAF_REQUIRE_EQUAL(results->size(), 1u);
  CAF_CHECK(!(*results)[0].ok());
  CAF_CHECK((*results)[0].files.names.empty());
  CAF_CHECK_NOT_EQUAL((*results)[0].error.find("'../../time.json'"), std::string::npos);
}

CAF_TEST(a live worker answering with an error frees its slot and the job runs again) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({2, 1}));
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 1u);
  auto broken = state(a).jobs[0].id;
  state(a).answer_error = true;
  finish(a);
  // a is alive and free again: it takes the job back (to resume it), b keeps its own.
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 2u);
  CAF_CHECK_EQUAL(state(a).jobs[1].id, broken);
  CAF_CHECK(state(a).jobs[1].resume);
  state(a).answer_error = false;
  finish(a);
  finish(b);
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK((*results)[0].ok() && (*results)[1].ok());
}

CAF_TEST(a job whose worker keeps answering with errors fails after its attempts) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1}));
  state(a).answer_error = true;
  for (int i = 0; i < 10 && results->empty(); ++i)
    finish(a);
  CAF_REQUIRE_EQUAL(results->size(), 1u);
  CAF_CHECK_EQUAL((*results)[0].code, error_code::worker_lost);
  CAF_CHECK_NOT_EQUAL((*results)[0].error.find("broken"), std::string::npos);
  CAF_CHECK_EQUAL(static_cast<int>(state(a).jobs.size()), dispatcher_options{}.max_attempts);
}

CAF_TEST(control messages without a sender of this process are ignored) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1, 1}));
  caf::anon_send(dispatcher, cancel_atom::value, uint32_t{0});
  run();
  CAF_CHECK(sunk.empty()); // not cancelled
  auto b = sys.spawn(fake_worker);
  caf::anon_send(dispatcher, add_atom::value, b);
  run();
  CAF_CHECK(state(b).jobs.empty()); // not added: job 1 still waits for a
  finish(a);
  finish(a);
  CAF_CHECK_EQUAL(results->size(), 2u);
  CAF_CHECK(state(b).jobs.empty());
  anon_send_exit(b, caf::exit_reason::user_shutdown);
}

CAF_TEST(an interrupt saves the running jobs and starts no other) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({3, 2, 1, 1}));
  CAF_REQUIRE_EQUAL(state(a).jobs.size(), 1u);
  CAF_REQUIRE_EQUAL(state(b).jobs.size(), 1u);
  self->send(dispatcher, interrupt_atom::value);
  run();
  // Both running workers were told (the fake answers at once), the queued jobs
  // never started, and the run answered with every job.
  CAF_CHECK(state(a).interrupted);
  CAF_CHECK(state(b).interrupted);
  CAF_CHECK_EQUAL(state(a).jobs.size(), 1u);
  CAF_CHECK_EQUAL(state(b).jobs.size(), 1u);
  CAF_REQUIRE_EQUAL(results->size(), 4u);
  for (const auto& r : *results)
    CAF_CHECK_EQUAL(r.code, error_code::interrupted);
  CAF_CHECK_NOT_EQUAL((*results)[3].error.find("not started"), std::string::npos);
}

CAF_TEST(a worker lost after an interrupt does not send its job elsewhere) {
  auto a = add_worker();
  auto b = add_worker();
  auto results = start(jobs_with_costs({2, 1}));
  // a's job: the interrupt reaches a, which dies before it answers.
  auto lost = state(a).jobs[0].id;
  anon_send_exit(a, caf::exit_reason::kill);
  self->send(dispatcher, interrupt_atom::value);
  run();
  CAF_CHECK_EQUAL(state(b).jobs.size(), 1u); // b got no second job
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK_EQUAL((*results)[lost].code, error_code::interrupted);
}

CAF_TEST(losing every worker fails the experiment instead of hanging) {
  auto a = add_worker();
  auto results = start(jobs_with_costs({1}));
  CAF_CHECK(!*failed);
  anon_send_exit(a, caf::exit_reason::kill);
  run();
  CAF_CHECK(*failed);
  CAF_CHECK(results->empty());
}

CAF_TEST(with a wait for workers the job of a lost slot waits for a host that joins) {
  dispatcher_options o;
  o.cores = 2;
  o.wait_for_workers = 30;
  dispatcher = spawn_dispatcher(sys, sink, o);
  run();
  auto a = add_worker();
  auto results = start(jobs_with_costs({1, 1}));
  anon_send_exit(a, caf::exit_reason::kill);
  sched.run();
  CAF_CHECK(!*failed); // the wait is armed, not over
  // 20 s later a host comes back: its slot takes the lost job (resumed) and the next.
  sched.advance_time(std::chrono::seconds(20));
  sched.run();
  CAF_CHECK(!*failed);
  auto b = add_worker();
  CAF_REQUIRE_EQUAL(state(b).jobs.size(), 1u);
  CAF_CHECK(state(b).jobs[0].resume);
  // The first wait's reminder comes after b joined: it is stale and changes nothing.
  sched.advance_time(std::chrono::seconds(20));
  run();
  CAF_CHECK(!*failed);
  finish(b);
  finish(b);
  CAF_REQUIRE_EQUAL(results->size(), 2u);
  CAF_CHECK((*results)[0].ok() && (*results)[1].ok());
}

CAF_TEST(with a wait for workers and none joining the experiment fails after the wait) {
  dispatcher_options o;
  o.cores = 2;
  o.wait_for_workers = 30;
  dispatcher = spawn_dispatcher(sys, sink, o);
  run();
  // No worker at the start either (hosts that are still coming).
  auto results = start(jobs_with_costs({1}));
  sched.advance_time(std::chrono::seconds(29));
  sched.run();
  CAF_CHECK(!*failed);
  sched.advance_time(std::chrono::seconds(2));
  sched.run();
  CAF_CHECK(*failed);
  CAF_CHECK(results->empty());
}

CAF_TEST_FIXTURE_SCOPE_END()
