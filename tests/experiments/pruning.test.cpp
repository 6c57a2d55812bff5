#include <torch/torch.h>

#define CAF_SUITE experiments.pruning
#include <caf/test/dsl.hpp>

#include "actor_util.hpp"
#include "test_util.hpp"

#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/experiments/pruning.hpp>

#include <caf/all.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>

using namespace pnn;

namespace {

/// Validation accuracy of configuration `config` after `epoch` epochs in the
/// scenarios below: each configuration improves by 0.01 per epoch from its base.
double accuracy_of(uint32_t config, int64_t epoch) {
  const double base[] = {0.5, 0.8, 0.6, 0.7, 0.55, 0.65};
  return base[config % 6] + 0.01 * static_cast<double>(epoch);
}

/// A worker that trains nothing: it answers each job at once, done up to its pause
/// (or its end), with the accuracy above, and records what it was given.
struct instant_worker_state {
  std::vector<job_spec> jobs;
  int32_t folds = 2;
  static inline const char* name = "instant_worker";
};

using instant_pointer = worker_actor::stateful_pointer<instant_worker_state>;

worker_actor::behavior_type instant_worker(instant_pointer self, int32_t folds) {
  self->state.folds = folds;
  auto answer = [self](const job_spec& j) {
    self->state.jobs.push_back(j);
    job_result r;
    r.id = j.id;
    r.code = error_code::none;
    r.epochs_done = j.pause_at > 0 ? j.pause_at : j.epochs;
    r.val_accuracy = accuracy_of(j.id / static_cast<uint32_t>(self->state.folds), r.epochs_done);
    r.started_at = static_cast<double>(self->state.jobs.size());
    r.finished_at = r.started_at + 0.5;
    return r;
  };
  return {
    [=](run_atom, const job_spec& j) -> caf::result<job_result> { return answer(j); },
    [=](run_atom, const job_spec& j, const job_checkpoint&) -> caf::result<job_result> {
      return answer(j);
    },
    [=](run_atom, const job_spec&, const sgd_link&) -> caf::result<job_result> {
      return job_result{};
    },
    [=](threads_atom, int32_t) {},
    [=](interrupt_atom) {},
    [=](cancel_atom) {},
  };
}

/// `configs` configurations of `folds` jobs of `epochs` epochs each, cost 0 (handed
/// out by id).
std::vector<job_spec> grid_jobs(size_t configs, int32_t folds, int64_t epochs) {
  std::vector<job_spec> jobs;
  for (uint32_t id = 0; id < configs * static_cast<size_t>(folds); ++id) {
    job_spec j;
    j.id = id;
    j.fold = static_cast<int32_t>(id % static_cast<uint32_t>(folds));
    j.folds = folds;
    j.epochs = epochs;
    jobs.push_back(j);
  }
  return jobs;
}

/// Events as "kind config@epoch" lines, the start line left out.
std::vector<std::string> decisions(const std::vector<prune_event>& events) {
  std::vector<std::string> out;
  for (const auto& e : events)
    if (e.kind != "start")
      out.push_back(e.kind + " " + std::to_string(e.config) + "@" + std::to_string(e.epoch));
  return out;
}

struct fixture : test_coordinator_fixture<> {
  std::shared_ptr<test::sink_record> events = std::make_shared<test::sink_record>();
  event_sink_actor sink;
  test::temp_dir dir;

  fixture() {
    sink = test::spawn_recording_sink(sys, events);
    run();
  }

  ~fixture() {
    anon_send_exit(sink, caf::exit_reason::user_shutdown);
    run();
  }

  std::shared_ptr<successive_halving> policy(size_t configs, int32_t folds, int64_t epochs,
                                             const std::string& spec,
                                             std::vector<prune_event> replay = {},
                                             prune_rule rule = {}) {
    successive_halving::setup s;
    s.configs = configs;
    s.folds = folds;
    s.epochs = epochs;
    s.options = prune_options::parse(spec);
    s.rule = std::move(rule);
    s.journal = dir / "pruning.jsonl";
    s.replay = std::move(replay);
    return std::make_shared<successive_halving>(std::move(s));
  }

  dispatcher_actor dispatcher_with(std::shared_ptr<pruning_policy> p) {
    dispatcher_options o;
    o.cores = 1;
    o.threads_per_job = 1;
    o.raise_threads_in_tail = false;
    o.pruning = std::move(p);
    auto d = spawn_dispatcher(sys, sink, o);
    run();
    return d;
  }

  /// Runs `jobs` through `d` to their end; the dispatcher's reply.
  std::vector<job_result> run_all(dispatcher_actor d, std::vector<job_spec> jobs) {
    auto results = std::make_shared<std::vector<job_result>>();
    sys.spawn([=](caf::event_based_actor* s) {
      s->request(d, caf::infinite, run_atom::value, jobs)
        .then([results](std::vector<job_result>& r) { *results = std::move(r); },
              [](caf::error&) {});
    });
    run();
    return *results;
  }
};

} // namespace

CAF_TEST(prune specs parse and rungs lie at min epochs times powers of eta below the epochs) {
  auto o = prune_options::parse("halving");
  CAF_CHECK(o.enabled());
  CAF_CHECK_EQUAL(o.eta, 3);
  CAF_CHECK_EQUAL(o.min_epochs, 1);
  CAF_CHECK_EQUAL(o.rungs(9), (std::vector<int64_t>{1, 3}));
  CAF_CHECK_EQUAL(o.rungs(10), (std::vector<int64_t>{1, 3, 9}));
  CAF_CHECK_EQUAL(o.rungs(1), (std::vector<int64_t>{}));
  o = prune_options::parse("halving:eta=2,min_epochs=2");
  CAF_CHECK_EQUAL(o.rungs(16), (std::vector<int64_t>{2, 4, 8}));
  CAF_CHECK_EQUAL(o.spec(), "halving:eta=2,min_epochs=2");
  CAF_CHECK(!prune_options::parse("none").enabled());
  CAF_CHECK(prune_options::parse("none").rungs(9).empty());
  for (const char* bad : {"halving:eta=1", "halving:eta=2.5", "halving:min_epochs=0",
                          "halving:patience=3", "hyperband", "halving:eta=x"}) {
    auto [code, msg] = test::error_of([&] { prune_options::parse(bad); });
    CAF_CHECK(code == error_code::invalid_argument);
    CAF_CHECK(test::contains(msg, "--prune"));
  }
}

CAF_TEST(asha rule promotes the best floor of n over eta not yet promoted) {
  rung_view v;
  v.eta = 3;
  v.completed = {{4, 0.9, false}, {1, 0.8, true}, {2, 0.7, false}, {0, 0.6, false},
                 {3, 0.5, false}, {5, 0.4, false}, {6, 0.3, false}};
  // 7 completed: the top 2 go on; one of them already does.
  CAF_CHECK_EQUAL(asha_rule(v), (std::vector<uint32_t>{4}));
  v.completed.resize(2);
  CAF_CHECK(asha_rule(v).empty()); // floor(2 / 3) = 0
}

CAF_TEST_FIXTURE_SCOPE(pruning_tests, fixture)

CAF_TEST(rungs and promotions follow asha as configurations complete each rung) {
  // 4 configurations x 2 folds x 4 epochs, eta 2: rungs at 1 and 2 epochs.
  auto p = policy(4, 2, 4, "halving:eta=2,min_epochs=1");
  auto d = dispatcher_with(p);
  auto worker = sys.spawn(instant_worker, 2);
  self->send(d, add_atom::value, worker);
  run();
  auto results = run_all(d, grid_jobs(4, 2, 4));
  // Configuration 1 (best) completes rung 1 and is promoted at once (top 1 of 2); 3
  // is second best and goes on when the fourth completes (top 2 of 4); at rung 2, 1
  // beats 3 and alone trains to the end; the rest stop where they are.
  CAF_CHECK_EQUAL(decisions(p->events()),
                  (std::vector<std::string>{"rung 0@1", "rung 1@1", "promote 1@1", "rung 1@2",
                                            "rung 2@1", "rung 3@1", "promote 3@1", "rung 3@2",
                                            "promote 1@2", "stop 0@1", "stop 2@1", "stop 3@2"}));
  // What the worker was given: promoted jobs before those not started yet, each
  // from where it paused.
  auto& given = deref<caf::stateful_actor<instant_worker_state, worker_actor::base>>(worker).state.jobs;
  std::vector<std::pair<uint32_t, int64_t>> order;
  for (const auto& j : given)
    order.emplace_back(j.id, j.pause_at);
  CAF_CHECK_EQUAL(order, (std::vector<std::pair<uint32_t, int64_t>>{
                           {0, 1}, {1, 1}, {2, 1}, {3, 1}, {2, 2}, {3, 2}, {4, 1}, {5, 1},
                           {6, 1}, {7, 1}, {6, 2}, {7, 2}, {2, 0}, {3, 0}}));
  for (const auto& j : given)
    CAF_CHECK_EQUAL(j.resume, j.pause_at != 1);
  // Every job ends once, ok, with the epochs it trained; parts before its last
  // are kept.
  CAF_REQUIRE_EQUAL(results.size(), 8u);
  const int64_t expected_epochs[] = {1, 1, 4, 4, 1, 1, 2, 2};
  for (const auto& r : results) {
    CAF_CHECK(r.ok());
    CAF_CHECK_EQUAL(r.epochs_done, expected_epochs[r.id]);
    CAF_CHECK_EQUAL(r.segments.size(), r.id == 2 || r.id == 3 ? 4u : (r.id >= 6 ? 2u : 0u));
  }
  CAF_CHECK_EQUAL(events->results.size(), 8u); // the sink saw final results only
  // The journal on disk says the same, line by line.
  CAF_CHECK_EQUAL(decisions(read_prune_journal(dir / "pruning.jsonl")), decisions(p->events()));
  anon_send_exit(d, caf::exit_reason::user_shutdown);
}

CAF_TEST(a paused job frees its slot and the next job goes out in the same dispatch) {
  auto p = policy(3, 1, 3, "halving:eta=3,min_epochs=1");
  auto d = dispatcher_with(p);
  auto worker = sys.spawn(instant_worker, 1);
  self->send(d, add_atom::value, worker);
  run();
  sys.spawn([=](caf::event_based_actor* s) {
    s->request(d, caf::infinite, run_atom::value, grid_jobs(3, 1, 3)).then([](std::vector<job_result>&) {});
  });
  sched.run_once(); // the client sends its request
  expect((run_atom, std::vector<job_spec>), from(_).to(d));
  auto handed_out = [&] {
    expect((assign_atom, job_spec, worker_actor), from(d).to(sink));
    expect((run_atom, job_spec), from(d).to(worker));
  };
  handed_out();
  // Job 0 pauses after epoch 1: the dispatcher hands out job 1 while handling that
  // answer, before any other message.
  expect((job_result), from(worker).to(d));
  handed_out();
  // Job 1 pauses; the third completes the rung, and the best goes on at once.
  expect((job_result), from(worker).to(d));
  handed_out();
  expect((job_result), from(worker).to(d));
  handed_out();
  run();
  auto& given = deref<caf::stateful_actor<instant_worker_state, worker_actor::base>>(worker).state.jobs;
  CAF_REQUIRE_EQUAL(given.size(), 4u);
  CAF_CHECK_EQUAL(given[3].id, 1u); // configuration 1: 0.81 against 0.51 and 0.61
  CAF_CHECK_EQUAL(given[3].pause_at, 0);
  anon_send_exit(d, caf::exit_reason::user_shutdown);
}

CAF_TEST(a journal replayed after a crash keeps its decisions and the run ends with the same) {
  // The uninterrupted run.
  auto whole = policy(4, 2, 4, "halving:eta=2,min_epochs=1");
  {
    auto d = dispatcher_with(whole);
    auto w = sys.spawn(instant_worker, 2);
    self->send(d, add_atom::value, w);
    run();
    run_all(d, grid_jobs(4, 2, 4));
    anon_send_exit(d, caf::exit_reason::user_shutdown);
  }
  const auto expected = decisions(whole->events());
  // A coordinator that died while writing its 8th journal line ("promote 3@1"),
  // cut short: the resumed run replays the start line and the 6 events before it,
  // hands every unfinished job out again, and decides the promotion afresh.
  auto lines = test::read_text(dir / "pruning.jsonl");
  size_t at = 0;
  for (int i = 0; i < 7; ++i)
    at = lines.find('\n', at) + 1;
  std::ofstream(dir / "pruning.jsonl", std::ios::trunc) << lines.substr(0, at)
                                                        << lines.substr(at, 20);
  auto replay = read_prune_journal(dir / "pruning.jsonl");
  CAF_REQUIRE_EQUAL(replay.size(), 7u);
  auto resumed = policy(4, 2, 4, "halving:eta=2,min_epochs=1", replay);
  CAF_CHECK_EQUAL(resumed->configs()[1].level, 1u); // promoted before the crash
  CAF_CHECK_EQUAL(resumed->configs()[3].level, 0u); // its rung done, not decided
  CAF_CHECK_EQUAL(resumed->configs()[3].means.count(0), 1u);
  auto d = dispatcher_with(resumed);
  auto w = sys.spawn(instant_worker, 2);
  self->send(d, add_atom::value, w);
  run();
  auto results = run_all(d, grid_jobs(4, 2, 4));
  CAF_CHECK_EQUAL(decisions(resumed->events()), expected);
  CAF_CHECK_EQUAL(decisions(read_prune_journal(dir / "pruning.jsonl")), expected);
  CAF_REQUIRE_EQUAL(results.size(), 8u);
  CAF_CHECK_EQUAL(results[2].epochs_done, 4);
  CAF_CHECK_EQUAL(results[6].epochs_done, 2);
  // Configurations promoted before the crash went straight to their next rung.
  auto& given = deref<caf::stateful_actor<instant_worker_state, worker_actor::base>>(w).state.jobs;
  for (const auto& j : given)
    if (j.id == 2 || j.id == 6)
      CAF_CHECK_NOT_EQUAL(j.pause_at, 1);
  // A journal of other settings is refused, naming what it was made with.
  auto [code, msg] = test::error_of([&] { policy(4, 2, 5, "halving:eta=2", replay); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "epochs=4"));
  anon_send_exit(d, caf::exit_reason::user_shutdown);
}

CAF_TEST(a user rule decides which configurations go on at each rung) {
  // Within 0.15 of the best at the rung goes on.
  std::vector<size_t> seen_rungs;
  auto rule = [&seen_rungs](const rung_view& v) {
    seen_rungs.push_back(v.index);
    std::vector<uint32_t> on;
    CAF_REQUIRE(!v.completed.empty()); // never asked about an empty rung
    for (const auto& e : v.completed)
      if (!e.promoted && e.mean >= v.completed.front().mean - 0.15)
        on.push_back(e.config);
    return on;
  };
  auto p = policy(4, 2, 4, "halving:eta=2,min_epochs=1", {}, rule);
  auto d = dispatcher_with(p);
  auto w = sys.spawn(instant_worker, 2);
  self->send(d, add_atom::value, w);
  run();
  auto results = run_all(d, grid_jobs(4, 2, 4));
  CAF_REQUIRE_EQUAL(results.size(), 8u);
  // Decided as they come: configuration 0 (0.51) is the best when it completes the
  // first rung and goes on; 1 (0.81) then sets the bar, which 2 (0.61) misses and
  // 3 (0.71) clears. Those that go on train to the end; 2 stops at the first rung.
  for (const auto& r : results)
    CAF_CHECK_EQUAL(r.epochs_done, r.id == 4 || r.id == 5 ? 1 : 4);
  // Asked at each rung as configurations completed it (4 at the first, 3 at the
  // second: 2 never gets there) and once more per rung at the end.
  CAF_CHECK_EQUAL(std::count(seen_rungs.begin(), seen_rungs.end(), size_t{0}), 5);
  CAF_CHECK_EQUAL(std::count(seen_rungs.begin(), seen_rungs.end(), size_t{1}), 4);
  anon_send_exit(d, caf::exit_reason::user_shutdown);
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST(a configuration that survives every rung ends exactly as without pruning) {
  test::temp_dir dir;
  kfold_options o;
  o.dataset = "synthetic:train=240,test=10,noise=150";
  o.models = {"lenet"};
  o.schedulers = {"cosine"};
  o.lrs = {1e-4, 3e-3, 1e-2};
  o.folds = 2;
  o.epochs = 3;
  o.out = dir / "pruned";
  o.progress = "none";
  o.cores = 2;
  o.raise_threads_in_tail = false; // one thread everywhere: the same float sums
  o.prune = "halving:eta=3,min_epochs=1";
  auto pruned = run_kfold(o);
  auto plain_options = o;
  plain_options.prune = "none";
  plain_options.out = dir / "plain";
  auto plain = run_kfold(plain_options);
  CAF_REQUIRE_EQUAL(pruned.jobs.size(), 6u);
  int finished = 0, stopped = 0;
  for (size_t i = 0; i < 6; ++i) {
    const auto& a = pruned.jobs[i];
    const auto& b = plain.jobs[i];
    CAF_REQUIRE(a.ok());
    CAF_CHECK_EQUAL(b.epochs_done, 3);
    if (a.epochs_done == 3) {
      ++finished;
      CAF_CHECK_EQUAL(a.val_accuracy, b.val_accuracy);
      CAF_CHECK_EQUAL(a.val_loss, b.val_loss);
      CAF_CHECK_EQUAL(a.train_loss, b.train_loss);
    } else {
      ++stopped;
      CAF_CHECK_EQUAL(a.epochs_done, 1);
      // Stopped where it was, with the figures it had there.
      CAF_REQUIRE_GREATER_OR_EQUAL(b.epoch_val_accuracy.size(), 1u);
      CAF_CHECK_EQUAL(a.val_accuracy, b.epoch_val_accuracy[0]);
    }
  }
  CAF_CHECK_EQUAL(finished, 2); // floor(3 / 3) = 1 configuration of 2 folds
  CAF_CHECK_EQUAL(stopped, 4);
  // The outputs say which were pruned and where; the stopped keep their checkpoint.
  auto summary = nlohmann::json::parse(test::read_text(dir / "pruned/summary.json"));
  int pruned_rows = 0;
  for (const auto& row : summary["table"])
    pruned_rows += row.value("pruned", false) ? 1 : 0;
  CAF_CHECK_EQUAL(pruned_rows, 2);
  CAF_CHECK_EQUAL(summary["prune"]["rungs"], nlohmann::json::array({1}));
  CAF_CHECK_GREATER(summary["prune"]["exhaustive_job_seconds_estimate"].get<double>(),
                    summary["prune"]["job_seconds"].get<double>());
  for (const auto& job : summary["jobs"])
    if (job.value("pruned", false)) {
      CAF_CHECK_EQUAL(job["stopped_at_epoch"].get<int>(), 1);
      CAF_CHECK(std::filesystem::exists(dir / "pruned" / job["dir"].get<std::string>() / "latest.pt"));
    }
}
