// A training worker as one worker of distributed SGD through a parameter holder,
// under CAF's deterministic test coordinator: what it pulls and pushes and when,
// the bound on unanswered pushes, timeouts, rejected updates and wrong layouts.
#include <torch/torch.h>

#define CAF_SUITE actors.sgd
#include <caf/test/dsl.hpp>

#include "test_util.hpp"

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/cluster.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/experiments/holder_file.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/flat_optimizer.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>

#include <cmath>
#include <map>
#include <optional>
#include <cstring>

using namespace pnn;

namespace {

/// A stand-in holder whose answers the test controls.
struct fake_holder {
  param_blob params; ///< what a pull answers
  bool answer_pulls = true;
  bool hold_pushes = false;   ///< keep push answers until release()
  bool reject_pushes = false; ///< answer pushes with a pnn error
  int pulls = 0;
  std::vector<param_blob> pushes; ///< version: the push's `seen`
  std::vector<caf::typed_response_promise<push_ack>> held;
  /// Push `stale_push` (0-based) is answered with staleness `stale_by`.
  size_t stale_push = SIZE_MAX;
  uint64_t stale_by = 0;
  std::vector<std::string> events; ///< "pull" and "push" in the order they came
  std::vector<size_t> square_bytes; ///< each push's squared-gradient bytes
  /// Hold the second pull until release_pull; it is then answered with what a
  /// holder had when it was asked (params + the pushes until then) plus an offset
  /// on every value (another worker's progress).
  bool hold_second_pull = false;
  caf::typed_response_promise<param_blob> held_pull;
  size_t pushes_at_pull = 0;
};

/// What a holder has after the first `pushes` pushes, plus `offset` on the last 10
/// values (LeNet5's output bias: the same shift on every logit changes no
/// prediction and no gradient, so it shows up only where it is copied).
param_blob holder_view(const fake_holder& h, size_t pushes, float offset, uint64_t version) {
  param_blob b = h.params;
  auto* v = reinterpret_cast<float*>(b.bytes.data());
  for (size_t p = 0; p < pushes; ++p) {
    const auto* d = reinterpret_cast<const float*>(h.pushes[p].bytes.data());
    for (uint64_t i = 0; i < b.count; ++i)
      v[i] += d[i];
  }
  for (uint64_t i = b.count - 10; i < b.count; ++i)
    v[i] += offset;
  b.version = version;
  return b;
}

using release_atom = caf::atom_constant<caf::atom("release")>;
using release_pull_atom = caf::atom_constant<caf::atom("relpull")>;

/// The holder's interface plus the test's own controls.
using fake_holder_handle = holder_actor::extend<caf::reacts_to<release_atom, size_t>,
                                                caf::reacts_to<release_pull_atom, float>>;

fake_holder_handle::behavior_type fake_holder_actor(fake_holder_handle::pointer self,
                                                    std::shared_ptr<fake_holder> h) {
  return {
    // Answers held push `index` (promises are delivered from the holder's own context).
    [=](release_atom, size_t index) { h->held.at(index).deliver(push_ack{100 + index, 0}); },
    [=](release_pull_atom, float offset) {
      h->held_pull.deliver(holder_view(*h, h->pushes_at_pull, offset, 1000));
    },
    [=](pull_atom) -> caf::result<param_blob> {
      ++h->pulls;
      h->events.push_back("pull");
      if (!h->answer_pulls)
        return self->make_response_promise<param_blob>(); // never delivered
      if (h->hold_second_pull && h->pulls == 2) {
        h->held_pull = self->make_response_promise<param_blob>();
        h->pushes_at_pull = h->pushes.size();
        return h->held_pull;
      }
      // The start plus every accepted push, as a holder answers.
      return holder_view(*h, h->reject_pushes ? 0 : h->pushes.size(), 0,
                         h->params.version + (h->reject_pushes ? 0 : h->pushes.size()));
    },
    [=](status_atom) -> holder_status { return {}; },
    [=](leave_atom, const caf::actor_addr&) { h->events.push_back("leave"); },
    [=](checkpoint_atom) -> caf::result<param_blob, std::string> {
      return {h->params, std::string{}};
    },
    [=](push_atom, param_blob&) -> caf::result<uint64_t> {
      return make_error(error_code::invalid_argument, "test holder: workers push param_update");
    },
    [=](push_atom, param_update& update) -> caf::result<push_ack> {
      h->events.push_back("push");
      h->square_bytes.push_back(update.squares.size());
      param_blob b;
      b.version = update.seen;
      b.layout = update.layout;
      b.count = update.count;
      b.bytes = std::move(update.bytes);
      h->pushes.push_back(std::move(b));
      if (h->reject_pushes)
        return make_error(error_code::invalid_argument, "update rejected: test");
      if (h->hold_pushes) {
        auto rp = self->make_response_promise<push_ack>();
        h->held.push_back(rp);
        return rp;
      }
      const size_t index = h->pushes.size() - 1;
      return push_ack{h->pushes.size(), index == h->stale_push ? h->stale_by : 0};
    },
  };
}

struct fixture : test_coordinator_fixture<> {
  static job_spec sgd_job() {
    job_spec j;
    j.id = 3;
    j.model = "lenet5";
    j.scheduler = "none";
    j.dataset = "synthetic:train=192,test=10";
    j.shards = 1; // the whole set
    j.shard = 0;
    j.epochs = 2;
    j.batch_size = 32;
    return j;
  }

  /// How the worker of sgd_job() talks to its holder (start() sets the holder).
  sgd_link link = [] {
    sgd_link l;
    l.n_push = 3;
    l.n_pull = 4;
    l.max_pushes = 2;
    l.holder_timeout = 5;
    return l;
  }();

  /// The model a job of `spec` starts from, as a holder's blob.
  static param_blob initial_blob(const job_spec& spec) {
    auto data = training::shared_dataset(spec.dataset, "", 0).train;
    auto m =
      training::make_seeded_model(spec.model, data->channels(), data->num_classes(), spec.seed);
    param_blob b;
    b.layout = training::layout_hash(*m);
    b.bytes = training::parameter_bytes(*m);
    b.count = b.bytes.size() / sizeof(float);
    return b;
  }

  /// Sends (run, spec, link to holder) to a fresh worker; the result lands in *result.
  std::shared_ptr<std::optional<job_result>> start(const job_spec& spec, holder_actor holder,
                                                   worker_actor& w) {
    auto l = link;
    l.holder = std::move(holder);
    return start(spec, l, w);
  }

  /// The same with the link as it is (e.g. to shards).
  std::shared_ptr<std::optional<job_result>> start(const job_spec& spec, const sgd_link& l,
                                                   worker_actor& w) {
    worker_options o;
    o.batches_per_slice = 2;
    w = spawn_worker(sys, event_sink_actor{}, o);
    auto result = std::make_shared<std::optional<job_result>>();
    auto worker = w;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(worker, caf::infinite, run_atom::value, spec, l).then([result](job_result& r) {
        *result = std::move(r);
      });
    });
    return result;
  }

  /// A job of `spec` run to its end on a fresh worker linked by `l` to a fresh
  /// holder of the job's initial parameters (in `holder`); its result, ok.
  job_result run_with_new_holder(const job_spec& spec, sgd_link l, holder_actor& holder) {
    holder = spawn_holder(sys, initial_blob(spec));
    l.holder = holder;
    worker_actor w;
    auto result = start(spec, l, w);
    run();
    CAF_REQUIRE(result->has_value());
    CAF_REQUIRE((*result)->ok());
    anon_send_exit(w, caf::exit_reason::user_shutdown);
    return **result;
  }

  /// What `holder` answers to `msg` (an event-based requester; run() drives it).
  template <class T, class Atom>
  T ask(const holder_actor& holder, Atom msg) {
    auto out = std::make_shared<T>();
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(holder, caf::infinite, msg).then([=](T& v) { *out = std::move(v); });
    });
    run();
    return *out;
  }
};

std::vector<float> floats_of(const std::vector<char>& bytes) {
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(sgd_tests, fixture)

CAF_TEST(one worker through a holder ends where plain training ends) {
  auto spec = sgd_job();
  // Plain SGD: Adam turns the holder's float rounding (h + (c - h) is c only up to
  // one ulp) into lr-sized steps wherever a gradient is ~0.
  spec.optimizer = "sgd";
  spec.lr = 0.05;
  auto initial = initial_blob(spec);
  auto holder = spawn_holder(sys, initial);
  worker_actor w;
  auto result = start(spec, holder, w);
  run();
  CAF_REQUIRE(result->has_value());
  const auto& r = **result;
  CAF_CHECK(r.ok());
  if (!r.ok())
    CAF_MESSAGE("error: " << r.error);
  // 2 epochs x 6 batches = 12 steps; pushes at steps 3, 4 (before the pull), 6, 8
  // (before the pull), 9 and 12 (the end); pulls before step 1 and at steps 4 and 8.
  CAF_CHECK_EQUAL(r.sgd.pushes, 6);
  CAF_CHECK_EQUAL(r.sgd.pulls, 3);
  CAF_CHECK_EQUAL(r.sgd.rejected_pushes, 0);
  CAF_CHECK_EQUAL(r.samples, 384);
  auto st = ask<holder_status>(holder, status_atom::value);
  CAF_CHECK_EQUAL(st.applied, 6u);
  CAF_CHECK_EQUAL(st.version, 6u);
  CAF_CHECK_EQUAL(st.pulls, 3u);
  // The reference: the same job without a holder.
  auto data = training::shared_dataset(spec.dataset, "", 0).train;
  training::training_job ref{job_options_from(spec), data, training::all_indices(data->size()), {}};
  ref.run_to_end();
  auto final_params = ask<param_blob>(holder, pull_atom::value);
  auto got = floats_of(final_params.bytes);
  auto want = floats_of(training::parameter_bytes(*ref.model()));
  CAF_REQUIRE_EQUAL(got.size(), want.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
  CAF_MESSAGE("largest difference to plain training: " << max_diff);
  CAF_CHECK_LESS(max_diff, 1e-5);
  // And training moved the parameters.
  auto start_values = floats_of(initial.bytes);
  double moved = 0;
  for (size_t i = 0; i < got.size(); ++i)
    moved = std::max(moved, static_cast<double>(std::abs(got[i] - start_values[i])));
  CAF_CHECK_GREATER(moved, 1e-3);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(post local SGD pushes and pulls every step for its first epochs then every n) {
  auto spec = sgd_job();
  spec.optimizer = "sgd";
  spec.lr = 0.05;
  auto l = link; // n_push 3, n_pull 4
  l.local_after = 1;
  holder_actor holder, again, third;
  const auto r = run_with_new_holder(spec, l, holder);
  // Epoch 1 (steps 1-6): a push and a pull due after every step, after the pull
  // before step 1. Epoch 2: pushes at steps 8 (before the pull), 9 and 12 (the
  // end), the pull at step 8. Without local_after the run makes 6 pushes and 3
  // pulls (the first test). A pull due while one is on its way is not sent (one
  // at a time), so of the 8 pulls due some are left out.
  CAF_CHECK_EQUAL(r.sgd.pushes, 9);
  CAF_CHECK_GREATER(r.sgd.pulls, 3);
  CAF_CHECK_LESS_OR_EQUAL(r.sgd.pulls, 8);
  auto st = ask<holder_status>(holder, status_atom::value);
  CAF_CHECK_EQUAL(st.applied, 9u);
  // Half an epoch: steps 1-3 only.
  l.local_after = 0.5;
  const auto half = run_with_new_holder(spec, l, again);
  // Pushes at 1, 2, 3 (each with a pull due), then 4 (before the pull), 6, 8
  // (before the pull), 9, 12; pulls due before step 1, at 1, 2, 3, 4 and 8.
  CAF_CHECK_EQUAL(half.sgd.pushes, 8);
  CAF_CHECK_GREATER(half.sgd.pulls, 3);
  CAF_CHECK_LESS_OR_EQUAL(half.sgd.pulls, 6);
  // A switch between push steps (5/6 of an epoch: after step 5, which 5/6 x 6
  // reaches only up to rounding): pushes at 1-5, then 6, 8, 9 and 12.
  l.local_after = 5.0 / 6.0;
  CAF_CHECK_EQUAL(run_with_new_holder(spec, l, third).sgd.pushes, 9);
  for (auto& h : {holder, again, third})
    anon_send_exit(h, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a worker pulls and pushes through a bulk port and ends where plain training ends) {
  auto spec = sgd_job();
  spec.optimizer = "sgd";
  spec.lr = 0.05;
  auto initial = initial_blob(spec);
  // The holder in another actor system (another node, as on another host), with
  // a bulk port; its handle still reaches it in this process.
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 1);
  caf::actor_system other{cfg};
  auto port = std::make_shared<bulk_server>("127.0.0.1");
  bulk_endpoint at{"127.0.0.1", 0, ""};
  auto holder = spawn_holder(other, initial, {}, port, &at);
  auto l = link;
  l.holder = holder;
  l.bulk = {at};
  worker_actor w;
  auto result = start(spec, l, w);
  run();
  CAF_REQUIRE(result->has_value());
  const auto& r = **result;
  CAF_REQUIRE(r.ok());
  // As through the actor (the test above): 6 pushes, 3 pulls, every one of them
  // through the bulk port.
  CAF_CHECK_EQUAL(r.sgd.pushes, 6);
  CAF_CHECK_EQUAL(r.sgd.pulls, 3);
  CAF_CHECK_EQUAL(r.sgd.bulk_requests, 9);
  CAF_CHECK_EQUAL(r.sgd.rejected_pushes, 0);
  caf::scoped_actor self{other};
  param_blob final_params;
  self->request(holder, std::chrono::seconds(10), pull_atom::value)
    .receive([&](param_blob& b) { final_params = std::move(b); }, [](caf::error&) {});
  CAF_CHECK_EQUAL(final_params.version, 6u);
  auto data = training::shared_dataset(spec.dataset, "", 0).train;
  training::training_job ref{job_options_from(spec), data, training::all_indices(data->size()), {}};
  ref.run_to_end();
  auto got = floats_of(final_params.bytes);
  auto want = floats_of(training::parameter_bytes(*ref.model()));
  CAF_REQUIRE_EQUAL(got.size(), want.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
  CAF_MESSAGE("largest difference to plain training: " << max_diff);
  CAF_CHECK_LESS(max_diff, 1e-5);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
  self->send_exit(holder, caf::exit_reason::user_shutdown);
}

CAF_TEST(a bulk port that cannot be reached is said and the worker goes through the actor) {
  auto spec = sgd_job();
  spec.optimizer = "sgd";
  spec.lr = 0.05;
  auto initial = initial_blob(spec);
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 1);
  caf::actor_system other{cfg};
  bulk_endpoint at{"127.0.0.1", 0, std::string(32, 'a')};
  {
    bulk_server closed{"127.0.0.1"}; // a port nobody listens on once it is gone
    at.port = closed.port();
  }
  auto holder = spawn_holder(other, initial);
  auto l = link;
  l.holder = holder;
  l.bulk = {at};
  l.holder_timeout = 60;
  // The worker in a third actor system with real threads: its requests to the
  // holder are answered in their own time, which the test coordinator's clock
  // (it fires timeouts whenever it idles) would not wait for.
  caf::actor_system_config worker_cfg;
  configure_actor_system(worker_cfg, 1);
  caf::actor_system workers{worker_cfg};
  worker_options o;
  o.batches_per_slice = 2;
  auto w = spawn_worker(workers, event_sink_actor{}, o);
  caf::scoped_actor self{workers};
  std::optional<job_result> result;
  self->request(w, std::chrono::seconds(300), run_atom::value, spec, l)
    .receive([&](job_result& r) { result = std::move(r); },
             [&](caf::error& e) { CAF_FAIL("the worker: " << workers.render(e)); });
  CAF_REQUIRE(result.has_value());
  const auto& r = *result;
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.sgd.pushes, 6);
  CAF_CHECK_EQUAL(r.sgd.pulls, 3);
  CAF_CHECK_EQUAL(r.sgd.bulk_requests, 0);
  self->request(holder, std::chrono::seconds(10), status_atom::value)
    .receive([&](holder_status& s) { CAF_CHECK_EQUAL(s.applied, 6u); },
             [&](caf::error& e) { CAF_FAIL("the holder: " << workers.render(e)); });
  self->send_exit(w, caf::exit_reason::user_shutdown);
  self->send_exit(holder, caf::exit_reason::user_shutdown);
}

CAF_TEST(a worker waits when max_pushes pushes are unanswered) {
  auto spec = sgd_job();
  spec.epochs = 1;   // 6 steps
  link.n_push = 1;   // a push after every step
  link.n_pull = 100; // no pull after the first
  link.max_pushes = 2;
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->params.version = 41;
  h->hold_pushes = true;
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  sched.run(); // messages only: no request times out here
  // Two steps, two pushes, then nothing until an answer comes.
  CAF_CHECK_EQUAL(h->pulls, 1);
  CAF_REQUIRE_EQUAL(h->pushes.size(), 2u);
  CAF_CHECK(!result->has_value());
  for (size_t i = 0; i < h->pushes.size(); ++i) {
    const auto& p = h->pushes[i];
    CAF_CHECK_EQUAL(p.layout, h->params.layout);
    CAF_CHECK_EQUAL(p.count, h->params.count);
    // Built on the pulled version and this worker's own pushes since.
    CAF_CHECK_EQUAL(p.version, 41u + i);
    CAF_CHECK(training::check_floats(p.bytes, p.count).empty());
  }
  // One answer lets exactly one more step (and push) through.
  anon_send(holder, release_atom::value, size_t{0});
  sched.run(); // messages only: no request times out here
  CAF_CHECK_EQUAL(h->pushes.size(), 3u);
  CAF_CHECK(!result->has_value());
  // Answer everything as it comes: the job ends after its 6 steps, 6 pushes.
  for (size_t answered = 1; !result->has_value() && answered < 10; ++answered) {
    anon_send(holder, release_atom::value, answered);
    sched.run();
  }
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->ok());
  CAF_CHECK_EQUAL((*result)->sgd.pushes, 6);
  CAF_CHECK_EQUAL(h->pushes.size(), 6u);
  // The pushes add up to the distance travelled: their sum is the final model
  // minus the pulled start (checked on the first value).
  double sum = 0;
  for (const auto& p : h->pushes)
    sum += floats_of(p.bytes)[0];
  CAF_CHECK_NOT_EQUAL(sum, 0.0);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(training goes on while a pull is under way and its answer is merged) {
  auto spec = sgd_job();
  spec.optimizer = "sgd";
  spec.lr = 0.05;
  spec.epochs = 1; // 6 steps
  link.n_push = 1;
  link.n_pull = 2;
  link.max_pushes = 2; // push answers are held: the worker runs only as far as they allow
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->hold_pushes = true;
  h->hold_second_pull = true;
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  sched.run(); // messages only: no request times out here
  // Steps 1 and 2, then the pull (sent after push 2); 2 pushes unanswered: wait.
  CAF_REQUIRE_EQUAL(h->pushes.size(), 2u);
  CAF_CHECK_EQUAL(h->pulls, 2);
  CAF_CHECK_EQUAL(h->pushes_at_pull, 2u);
  // A push answer lets step 3 run although the pull is still unanswered.
  anon_send(holder, release_atom::value, size_t{0});
  sched.run();
  CAF_REQUIRE_EQUAL(h->pushes.size(), 3u);
  CAF_CHECK(h->held_pull.pending());
  // The pull's answer: the other workers moved the output bias by +1.
  anon_send(holder, release_pull_atom::value, 1.0f);
  sched.run();
  CAF_CHECK_EQUAL(h->pushes.size(), 3u); // merging is no step
  for (size_t answered = 1; !result->has_value() && answered < 10; ++answered) {
    anon_send(holder, release_atom::value, answered);
    sched.run();
  }
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->ok());
  CAF_REQUIRE_EQUAL(h->pushes.size(), 6u);
  // Pulls: the first, the merged one, and the one at step 4 (answered at once).
  CAF_CHECK_EQUAL((*result)->sgd.pulls, 3);
  CAF_CHECK_EQUAL(h->pulls, 3);
  // Push 3 has seen version 0 and pushes 1 and 2; push 4 the merged version 1000
  // and push 3 (sent after the pull, so not in 1000) ...
  CAF_CHECK_EQUAL(h->pushes[2].version, 2u);
  CAF_CHECK_EQUAL(h->pushes[3].version, 1001u);
  // ... and no push echoes the +1 back: each carries only this worker's own steps.
  for (size_t p = 0; p < h->pushes.size(); ++p) {
    float largest = 0;
    for (auto v : floats_of(h->pushes[p].bytes))
      largest = std::max(largest, std::abs(v));
    CAF_MESSAGE("push " << p + 1 << ": largest value " << largest << ", version "
                        << h->pushes[p].version);
    CAF_CHECK_GREATER(largest, 0.0f);
    CAF_CHECK_LESS(largest, 0.5f);
  }
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a rejected push is counted and the job goes on) {
  auto spec = sgd_job();
  spec.epochs = 1;
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->reject_pushes = true;
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->ok());
  // 6 steps: pushes at 3, 4 (pull), 6 (end); every one refused.
  CAF_CHECK_EQUAL((*result)->sgd.pushes, 3);
  CAF_CHECK_EQUAL((*result)->sgd.rejected_pushes, 3);
  CAF_CHECK_EQUAL((*result)->sgd.pulls, 2);
  CAF_CHECK_EQUAL((*result)->sgd.accepted_pushes, 0);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  // Each push waits for its refusal: a refused push did not move the holder's
  // version, so none of the later ones claims to have seen it.
  link.n_push = 1;
  link.n_pull = 100;
  link.max_pushes = 1;
  auto h2 = std::make_shared<fake_holder>();
  h2->params = initial_blob(spec);
  h2->params.version = 7;
  h2->reject_pushes = true;
  holder = sys.spawn(fake_holder_actor, h2);
  result = start(spec, holder, w);
  run();
  CAF_REQUIRE(result->has_value());
  CAF_REQUIRE_EQUAL(h2->pushes.size(), 6u);
  for (const auto& p : h2->pushes)
    CAF_CHECK_EQUAL(p.version, 7u);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a holder that does not answer fails the job after its timeout) {
  auto spec = sgd_job();
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->answer_pulls = false;
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  sched.run();                     // messages only (run() would also fire the timeout)
  CAF_CHECK(!result->has_value()); // waiting: no step without parameters
  CAF_CHECK_EQUAL(h->pushes.size(), 0u);
  CAF_CHECK_EQUAL(sched.trigger_timeouts(), 1u);
  sched.run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK(!(*result)->ok());
  CAF_CHECK_EQUAL((*result)->code, error_code::holder_failed);
  CAF_MESSAGE((*result)->error);
  CAF_CHECK(test::contains((*result)->error, "did not answer a pull within"));
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(parameters of another layout fail the job before any step) {
  auto spec = sgd_job();
  param_blob other;
  other.layout = 12345;
  other.count = 10;
  other.bytes.assign(40, 0);
  auto holder = spawn_holder(sys, other);
  worker_actor w;
  auto result = start(spec, holder, w);
  run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK(!(*result)->ok());
  CAF_CHECK_EQUAL((*result)->code, error_code::holder_failed);
  CAF_MESSAGE((*result)->error);
  CAF_CHECK(test::contains((*result)->error, "do not fit model lenet5"));
  CAF_CHECK_EQUAL((*result)->sgd.pushes, 0);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a holder running Adam for one worker pushing every step trains as plain Adam) {
  auto spec = sgd_job();
  spec.optimizer = "adam";
  spec.lr = 1e-3;
  link.n_push = 1;
  link.n_pull = 1;
  link.gradients = true;
  auto initial = initial_blob(spec);
  holder_options ho;
  ho.optimizer = training::optimizer_options::parse("adam", 1e-3);
  auto holder = spawn_holder(sys, initial, ho);
  worker_actor w;
  auto result = start(spec, holder, w);
  run();
  CAF_REQUIRE(result->has_value());
  const auto& r = **result;
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.sgd.pushes, 12); // 2 epochs x 6 batches, one push each
  CAF_CHECK_EQUAL(r.sgd.rejected_pushes, 0);
  CAF_CHECK_EQUAL(r.sgd.staleness_max, 0u); // one worker: never stale
  auto st = ask<holder_status>(holder, status_atom::value);
  CAF_CHECK_EQUAL(st.applied, 12u);
  // The reference: plain Adam in one process, no holder.
  auto data = training::shared_dataset(spec.dataset, "", 0).train;
  training::training_job ref{job_options_from(spec), data, training::all_indices(data->size()), {}};
  ref.run_to_end();
  auto got = floats_of(ask<param_blob>(holder, pull_atom::value).bytes);
  auto want = floats_of(training::parameter_bytes(*ref.model()));
  CAF_REQUIRE_EQUAL(got.size(), want.size());
  double max_diff = 0, moved = 0;
  const auto start_values = floats_of(initial.bytes);
  for (size_t i = 0; i < got.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
    moved = std::max(moved, static_cast<double>(std::abs(got[i] - start_values[i])));
  }
  CAF_MESSAGE("largest difference to plain Adam: " << max_diff << " (moved up to " << moved << ")");
  CAF_CHECK_LESS(max_diff, 1e-6);
  CAF_CHECK_GREATER(moved, 1e-3);
  // The holder's moments are plain Adam's too.
  auto saved = std::make_shared<std::pair<param_blob, std::string>>();
  sys.spawn([=](caf::event_based_actor* self) {
    self->request(holder, caf::infinite, checkpoint_atom::value)
      .then([=](param_blob& b, std::string& st) { *saved = {std::move(b), std::move(st)}; });
  });
  run();
  auto& [params, state] = *saved;
  training::flat_optimizer reloaded(ho.optimizer.value(), params.bytes);
  reloaded.load_state(state);
  CAF_CHECK_EQUAL(reloaded.steps(), 12);
  auto moments = reloaded.state_tensors();
  CAF_REQUIRE_EQUAL(moments.size(), 2u);
  std::vector<float> ref_avg;
  for (const auto& p : ref.model()->parameters()) {
    const auto& key = c10::guts::to_string(p.unsafeGetTensorImpl());
    auto& st_ref = static_cast<torch::optim::AdamParamState&>(*ref.optimizer().state().at(key));
    auto t = st_ref.exp_avg().contiguous();
    ref_avg.insert(ref_avg.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  CAF_REQUIRE_EQUAL(ref_avg.size(), moments[0].values.size());
  double avg_diff = 0;
  for (size_t i = 0; i < ref_avg.size(); ++i)
    avg_diff = std::max(avg_diff, static_cast<double>(std::abs(ref_avg[i] - moments[0].values[i])));
  CAF_CHECK_LESS(avg_diff, 1e-6);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a worker of an Adam holder in three shards trains as plain Adam) {
  auto spec = sgd_job();
  link.n_push = 1;
  link.n_pull = 1;
  link.gradients = true;
  auto initial = initial_blob(spec);
  holder_options ho;
  ho.optimizer = training::optimizer_options::parse("adam", 1e-3);
  auto data = training::shared_dataset(spec.dataset, "", 0).train;
  training::training_job ref{job_options_from(spec), data, training::all_indices(data->size()), {}};
  const auto bounds = shard_bounds(*ref.model(), 3);
  for (const auto& slice : ParameterHolder::split(initial, bounds))
    link.shards.push_back(spawn_holder(sys, slice, ho));
  link.bounds = bounds;
  link.holder = link.shards.front();
  worker_actor w;
  auto result = start(spec, link, w);
  run();
  CAF_REQUIRE(result->has_value());
  const auto& r = **result;
  CAF_REQUIRE(r.ok());
  CAF_CHECK_EQUAL(r.sgd.pushes, 12);
  CAF_CHECK_EQUAL(r.sgd.accepted_pushes, 12);
  std::vector<float> got;
  for (size_t i = 0; i < link.shards.size(); ++i) {
    auto st = ask<holder_status>(link.shards[i], status_atom::value);
    CAF_CHECK_EQUAL(st.applied, 12u);
    CAF_CHECK_EQUAL(st.version, 12u);
    CAF_CHECK_EQUAL(st.rejected, 0u);
    auto part = ask<param_blob>(link.shards[i], pull_atom::value);
    CAF_CHECK_EQUAL(part.count, bounds[i + 1] - bounds[i]);
    auto values = floats_of(part.bytes);
    got.insert(got.end(), values.begin(), values.end());
  }
  ref.run_to_end();
  auto want = floats_of(training::parameter_bytes(*ref.model()));
  CAF_REQUIRE_EQUAL(got.size(), want.size());
  double max_diff = 0;
  for (size_t i = 0; i < got.size(); ++i)
    max_diff = std::max(max_diff, static_cast<double>(std::abs(got[i] - want[i])));
  CAF_MESSAGE("largest difference to plain Adam: " << max_diff);
  CAF_CHECK_LESS(max_diff, 1e-6);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  for (auto& h : link.shards)
    anon_send_exit(h, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(shards whose bounds do not cover the model fail the job before any step) {
  auto spec = sgd_job();
  auto initial = initial_blob(spec);
  const std::vector<uint64_t> bounds{0, 1000, initial.count};
  for (const auto& slice : ParameterHolder::split(initial, bounds))
    link.shards.push_back(spawn_holder(sys, slice));
  link.holder = link.shards.front();
  link.bounds = {0, 1000, initial.count - 1}; // one value short
  worker_actor w;
  auto result = start(spec, link, w);
  run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->code == error_code::invalid_argument);
  CAF_CHECK(test::contains((*result)->error, "bounds do not cover"));
  CAF_CHECK_EQUAL((*result)->samples, 0);
  // A shard given another shard's place: its slice's layout does not fit.
  link.bounds = bounds;
  std::swap(link.shards[0], link.shards[1]);
  link.holder = link.shards.front();
  worker_actor w2;
  auto second = start(spec, link, w2);
  run();
  CAF_REQUIRE(second->has_value());
  CAF_CHECK((*second)->code == error_code::holder_failed);
  CAF_MESSAGE((*second)->error);
  CAF_CHECK(test::contains((*second)->error, "shard 0"));
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(w2, caf::exit_reason::user_shutdown);
  for (auto& h : link.shards)
    anon_send_exit(h, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(gradients of several steps carry their squares for an Adam holder and not for SGD) {
  for (const std::string optimizer : {"adam", "sgd"}) {
    auto spec = sgd_job();
    spec.epochs = 1; // 6 steps: pushes of 3, 3
    spec.optimizer = optimizer;
    link.n_push = 3;
    link.n_pull = 100;
    link.gradients = true;
    auto h = std::make_shared<fake_holder>();
    h->params = initial_blob(spec);
    auto holder = sys.spawn(fake_holder_actor, h);
    worker_actor w;
    auto result = start(spec, holder, w);
    sched.run();
    CAF_REQUIRE(result->has_value());
    CAF_CHECK((*result)->ok());
    CAF_REQUIRE_EQUAL(h->square_bytes.size(), 2u);
    for (size_t bytes : h->square_bytes)
      CAF_CHECK_EQUAL(bytes, optimizer == "adam" ? h->params.bytes.size() : 0u);
    anon_send_exit(w, caf::exit_reason::user_shutdown);
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    run();
  }
}

CAF_TEST(a push answered over max_staleness makes the worker pull and wait before its next step) {
  for (int32_t bound : {0, 2}) {
    CAF_MESSAGE("max_staleness " << bound);
    auto spec = sgd_job();
    spec.epochs = 1;    // 6 steps
    link.n_push = 1;    // a push after every step
    link.n_pull = 100;  // no regular pull after the first
    link.max_pushes = 1;
    link.max_staleness = bound;
    auto h = std::make_shared<fake_holder>();
    h->params = initial_blob(spec);
    h->stale_push = 1; // the second push: 5 versions behind
    h->stale_by = 5;
    h->hold_second_pull = true;
    auto holder = sys.spawn(fake_holder_actor, h);
    worker_actor w;
    auto result = start(spec, holder, w);
    sched.run(); // messages only: no request times out here
    if (bound == 0) {
      // Unbounded: one pull, then every push.
      CAF_REQUIRE(result->has_value());
      CAF_CHECK_EQUAL((*result)->sgd.pulls, 1);
      CAF_CHECK_EQUAL((*result)->sgd.sync_pulls, 0);
      CAF_CHECK_EQUAL((*result)->sgd.staleness_max, 5u);
      CAF_CHECK((h->events == std::vector<std::string>{"pull", "push", "push", "push", "push",
                                                        "push", "push"}));
    } else {
      // The stale answer came before step 3 (max_pushes 1): a pull, and no step
      // (no push) until its answer is in.
      CAF_CHECK(!result->has_value());
      CAF_CHECK((h->events == std::vector<std::string>{"pull", "push", "push", "pull"}));
      anon_send(holder, release_pull_atom::value, 0.0f);
      sched.run();
      CAF_REQUIRE(result->has_value());
      CAF_CHECK((*result)->ok());
      CAF_CHECK_EQUAL((*result)->sgd.pulls, 2);
      CAF_CHECK_EQUAL((*result)->sgd.sync_pulls, 1);
      CAF_CHECK_EQUAL((*result)->sgd.staleness_max, 5u);
      CAF_CHECK_EQUAL((*result)->sgd.staleness_sum, 5u);
      CAF_CHECK_EQUAL(h->pushes.size(), 6u);
      // After the pull the pushes say they have seen the pulled version (1000).
      CAF_CHECK_EQUAL(h->pushes.back().version, 1000u + 3u);
    }
    anon_send_exit(w, caf::exit_reason::user_shutdown);
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    run();
  }
}

CAF_TEST(a synchronous worker waits for its round to be answered and pulls before its next step) {
  auto spec = sgd_job();
  spec.epochs = 1; // 6 steps
  link.sync = true;
  link.n_push = 1;
  link.n_pull = 100; // a synchronous worker pulls after each push whatever this says
  link.max_pushes = 2;
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->hold_pushes = true; // every round is held until the test releases it
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  for (size_t round = 0; round < 6; ++round) {
    sched.run();
    // pull, then (push, pull) per answered round, then this round's push: no step
    // while it is unanswered, and the pull only after the answer.
    std::vector<std::string> want{"pull"};
    for (size_t r = 0; r < round; ++r) {
      want.push_back("push");
      want.push_back("pull");
    }
    want.push_back("push");
    CAF_CHECK(h->events == want);
    CAF_CHECK(!result->has_value());
    anon_send(holder, release_atom::value, round);
  }
  sched.run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->ok());
  CAF_CHECK_EQUAL(h->pushes.size(), 6u);
  CAF_CHECK_EQUAL((*result)->sgd.pulls, 6); // the first and one after each round but the last
  // Each round's push says it has seen the version the round's pull brought.
  for (size_t i = 1; i < h->pushes.size(); ++i)
    CAF_CHECK_EQUAL(h->pushes[i].version, h->params.version + i);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a synchronous worker fails at once when its holder goes while its round is held) {
  auto spec = sgd_job();
  link.sync = true;
  link.n_push = 1;
  link.holder_timeout = 3600; // not what ends it
  auto h = std::make_shared<fake_holder>();
  h->params = initial_blob(spec);
  h->hold_pushes = true;
  auto holder = sys.spawn(fake_holder_actor, h);
  worker_actor w;
  auto result = start(spec, holder, w);
  sched.run();
  CAF_CHECK((h->events == std::vector<std::string>{"pull", "push"}));
  CAF_CHECK(!result->has_value()); // waiting for the round, with no timeout
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  sched.run();
  CAF_REQUIRE(result->has_value());
  CAF_CHECK((*result)->code == error_code::holder_failed);
  CAF_MESSAGE((*result)->error);
  CAF_CHECK(test::contains((*result)->error, "parameter holder"));
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST_FIXTURE_SCOPE_END()

namespace {

/// A short run of two local LeNet5 workers on synthetic data, writing into `out`.
sgd_options two_worker_sgd(const std::string& dataset, const std::filesystem::path& out) {
  sgd_options o;
  o.dataset = dataset;
  o.model = "lenet5";
  o.slots = 2;
  o.cores = 2;
  o.epochs = 1;
  o.out = out;
  o.progress = "none";
  return o;
}

/// The learning rate of the first step in a worker's steps.csv (its last column).
double first_step_lr(const std::filesystem::path& steps_csv) {
  const auto steps = test::read_text(steps_csv);
  auto first = steps.substr(steps.find('\n') + 1);
  first = first.substr(0, first.find('\n'));
  return std::stod(first.substr(first.rfind(',') + 1));
}

} // namespace

CAF_TEST(an SGD run saves the holder and a second run resumes from it) {
  test::temp_dir dir;
  auto o = two_worker_sgd("synthetic:train=640,test=100", dir / "run");
  o.holder_checkpoint_every = 3;
  auto first = run_sgd(o);
  auto saved = read_holder_file(dir / "run" / "holder.pt").params;
  // The end state (2 workers x 2 pushes = 4 updates), not the last multiple of 3.
  CAF_CHECK_EQUAL(first.holder.version, 4u);
  CAF_CHECK_EQUAL(saved.version, first.holder.version);
  o.resume = true;
  // The second run's holder starts from holder.pt's parameters, to the bit.
  param_blob restored;
  o.on_holder = [&](ParameterHolder& holder) {
    caf::scoped_actor self{holder.handle()->home_system()};
    self->request(holder.handle(), std::chrono::seconds(30), pull_atom::value)
      .receive([&](param_blob& b) { restored = std::move(b); },
               [&](caf::error& e) { CAF_FAIL("no pull: " << to_string(e)); });
  };
  auto second = run_sgd(o);
  CAF_CHECK_EQUAL(restored.version, saved.version);
  CAF_CHECK_EQUAL(restored.layout, saved.layout);
  CAF_CHECK(restored.bytes == saved.bytes);
  CAF_CHECK_EQUAL(second.summary["resumed_from_version"].get<uint64_t>(), saved.version);
  CAF_CHECK_EQUAL(second.holder.version, saved.version + second.holder.applied);
  CAF_CHECK_GREATER_OR_EQUAL(second.test_accuracy, 0.9);
  // Another model cannot resume from these parameters.
  o.on_holder = nullptr;
  o.model = "lenet";
  auto [code, msg] = test::error_of([&] { run_sgd(o); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "holder.pt"));
}

CAF_TEST(averaged deltas come from workers at W times the learning rate and summed ones do not) {
  test::temp_dir dir;
  for (const std::string merge : {"average", "sum"}) {
    auto o = two_worker_sgd("synthetic:train=320,test=50", dir / merge);
    o.scheduler = "none";
    o.lr = 1e-3;
    o.merge = merge;
    auto r = run_sgd(o);
    CAF_CHECK_EQUAL(r.summary["merge"].get<std::string>(), merge);
    const double lr = first_step_lr(dir / merge / "workers" / "worker1" / "steps.csv");
    CAF_CHECK_EQUAL(lr, merge == "average" ? 2e-3 : 1e-3);
  }
}

CAF_TEST(a synchronous SGD run applies one version per round of every worker) {
  test::temp_dir dir;
  for (const std::string on : {"workers", "holder"}) {
    auto o = two_worker_sgd("synthetic:train=640,test=100", dir / on);
    o.epochs = 3;
    o.sync = true;
    o.n_push = 1;
    o.n_pull = 1;
    o.optimizer_on = on;
    auto r = run_sgd(o);
    CAF_MESSAGE(on << ": test accuracy " << r.test_accuracy);
    // 320 samples a worker: 10 steps an epoch each, 30 rounds of 2 pushes.
    CAF_CHECK_EQUAL(r.holder.rounds, 30u);
    CAF_CHECK_EQUAL(r.holder.version, 30u);
    CAF_CHECK_EQUAL(r.holder.applied, 60u);
    CAF_CHECK(r.summary["sync"].get<bool>());
    CAF_CHECK_EQUAL(r.summary["holder"]["rounds"].get<uint64_t>(), 30u);
    CAF_CHECK_EQUAL(r.summary["staleness_max"].get<uint64_t>(), 0u);
    CAF_CHECK_GREATER_OR_EQUAL(r.test_accuracy, 0.9);
    // The workers' schedules run at W x lr.
    CAF_CHECK_EQUAL(first_step_lr(dir / on / "workers" / "worker1" / "steps.csv"), 2 * o.lr);
  }
  // Settings that mean nothing with rounds are refused, naming the flag.
  sgd_options o;
  o.dataset = "synthetic:train=64,test=10";
  o.out = dir / "refused";
  o.sync = true;
  o.n_pull = 3;
  auto [code, msg] = test::error_of([&] { validate(o); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--n-pull"));
  o.n_pull = o.n_push;
  o.max_staleness = 2;
  msg = test::error_of([&] { validate(o); }).second;
  CAF_MESSAGE(msg);
  CAF_CHECK(test::contains(msg, "--max-staleness"));
  o.max_staleness = 0;
  o.merge = "sum";
  msg = test::error_of([&] { validate(o); }).second;
  CAF_MESSAGE(msg);
  CAF_CHECK(test::contains(msg, "--merge"));
  o.merge = "average";
  o.local_after = static_cast<double>(o.epochs) + 0.5;
  msg = test::error_of([&] { validate(o); }).second;
  CAF_MESSAGE(msg);
  CAF_CHECK(test::contains(msg, "--local-after"));
  o.local_after = -1;
  CAF_CHECK(test::contains(test::error_of([&] { validate(o); }).second, "--local-after"));
  o.local_after = static_cast<double>(o.epochs);
  CAF_CHECK(test::error_of([&] { validate(o); }).second.empty());
}

CAF_TEST(an SGD run with the optimizer on the holder resumes with its moments) {
  test::temp_dir dir;
  auto o = two_worker_sgd("synthetic:train=640,test=100", dir / "run");
  o.optimizer_on = "holder";
  o.max_staleness = 4;
  o.holder_checkpoint_every = 3;
  o.out = dir / "run";
  o.progress = "none";
  auto first = run_sgd(o);
  CAF_CHECK_EQUAL(first.summary["optimizer_on"].get<std::string>(), "holder");
  CAF_CHECK_EQUAL(first.summary["max_staleness"].get<int>(), 4);
  CAF_CHECK(first.summary["worker_list"][0].contains("staleness_max"));
  CAF_CHECK(std::isfinite(first.test_accuracy));
  auto saved = read_holder_file(dir / "run" / "holder.pt");
  CAF_CHECK_EQUAL(saved.optimizer, "adam");
  CAF_CHECK_EQUAL(saved.params.version, first.holder.version);
  training::flat_optimizer from_file(training::optimizer_options::parse("adam", 1e-3),
                                     saved.params.bytes);
  from_file.load_state(saved.optimizer_state);
  CAF_CHECK_GREATER(from_file.steps(), 0);
  // The resumed holder starts with the file's parameters and moments.
  o.resume = true;
  std::pair<param_blob, std::string> restored;
  o.on_holder = [&](ParameterHolder& holder) { restored = holder.checkpoint(); };
  auto second = run_sgd(o);
  CAF_CHECK(restored.first.bytes == saved.params.bytes);
  // (LibTorch keys optimizer state by tensor address: compare the tensors.)
  training::flat_optimizer from_holder(training::optimizer_options::parse("adam", 1e-3),
                                       restored.first.bytes);
  from_holder.load_state(restored.second);
  CAF_CHECK_EQUAL(from_holder.steps(), from_file.steps());
  auto a = from_holder.state_tensors(), b = from_file.state_tensors();
  CAF_REQUIRE_EQUAL(a.size(), 2u);
  CAF_REQUIRE_EQUAL(b.size(), 2u);
  CAF_CHECK(a[0].values == b[0].values);
  CAF_CHECK(a[1].values == b[1].values);
  CAF_CHECK_EQUAL(second.summary["resumed_from_version"].get<uint64_t>(), saved.params.version);
  // Resuming with the optimizer on the workers is refused, naming the flag.
  o.on_holder = nullptr;
  o.optimizer_on = "workers";
  auto [code, msg] = test::error_of([&] { run_sgd(o); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--optimizer-on"));
}

CAF_TEST(a sharded holder saves a file per shard and a resumed run goes on from each) {
  test::temp_dir dir;
  auto o = two_worker_sgd("synthetic:train=640,test=100", dir / "run");
  o.optimizer_on = "holder";
  o.holder_shards = 3;
  o.holder_checkpoint_every = 3;
  auto first = run_sgd(o);
  CAF_CHECK(!std::filesystem::exists(dir / "run" / "holder.pt"));
  CAF_CHECK_EQUAL(first.summary["holder_shards"].get<int>(), 3);
  const auto& shards = first.summary["holder"]["shards"];
  CAF_REQUIRE_EQUAL(shards.size(), 3u);
  CAF_CHECK_EQUAL(shards[0]["begin"].get<uint64_t>(), 0u);
  CAF_CHECK_EQUAL(shards[2]["end"].get<uint64_t>(),
                  first.summary["parameters"].get<uint64_t>());
  std::vector<holder_checkpoint> saved;
  for (int i = 0; i < 3; ++i) {
    CAF_CHECK_EQUAL(shards[i]["applied"].get<uint64_t>(), 4u); // 2 workers x 2 pushes
    saved.push_back(
      read_holder_file(dir / "run" / ("holder.shard" + std::to_string(i) + ".pt")));
    CAF_CHECK_EQUAL(saved.back().params.version, 4u);
    CAF_CHECK_EQUAL(saved.back().optimizer, "adam");
    CAF_CHECK_EQUAL(saved.back().params.count, shards[i]["end"].get<uint64_t>()
                                                  - shards[i]["begin"].get<uint64_t>());
  }
  CAF_CHECK(std::isfinite(first.test_accuracy));
  // The resumed holder's shards start from their files: parameters and moments.
  o.resume = true;
  std::vector<std::pair<param_blob, std::string>> restored;
  o.on_holder = [&](ParameterHolder& holder) { restored = holder.checkpoints(); };
  auto second = run_sgd(o);
  CAF_REQUIRE_EQUAL(restored.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    CAF_CHECK(restored[i].first.bytes == saved[i].params.bytes);
    CAF_CHECK_EQUAL(restored[i].first.version, saved[i].params.version);
    training::flat_optimizer a(training::optimizer_options::parse("adam", 1e-3),
                               restored[i].first.bytes);
    a.load_state(restored[i].second);
    training::flat_optimizer b(training::optimizer_options::parse("adam", 1e-3),
                               saved[i].params.bytes);
    b.load_state(saved[i].optimizer_state);
    CAF_CHECK_EQUAL(a.steps(), b.steps());
    CAF_CHECK(a.state_tensors()[1].values == b.state_tensors()[1].values);
  }
  CAF_CHECK_EQUAL(second.summary["resumed_from_version"].get<uint64_t>(), 4u);
  CAF_CHECK_EQUAL(second.holder.version, 8u);
  // Resuming with another shard count is refused, naming the flag; nothing is removed.
  o.on_holder = nullptr;
  o.holder_shards = 2;
  auto [code, msg] = test::error_of([&] { run_sgd(o); });
  CAF_MESSAGE(msg);
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--holder-shards 2"));
  CAF_CHECK(std::filesystem::exists(dir / "run" / "holder.shard2.pt"));
  // A fresh unsharded run in the folder replaces the shard files by holder.pt.
  o.resume = false;
  o.holder_shards = 1;
  run_sgd(o);
  CAF_CHECK(std::filesystem::exists(dir / "run" / "holder.pt"));
  CAF_CHECK(!std::filesystem::exists(dir / "run" / "holder.shard0.pt"));
}

CAF_TEST(a synchronous run of a sharded holder takes every round in every shard) {
  test::temp_dir dir;
  auto o = two_worker_sgd("synthetic:train=640,test=100", dir / "run");
  o.epochs = 2;
  o.sync = true;
  o.n_push = 1;
  o.n_pull = 1;
  o.optimizer_on = "holder";
  o.holder_shards = 2;
  auto r = run_sgd(o);
  // 320 samples a worker: 10 steps an epoch each, 20 rounds of 2 pushes per shard.
  CAF_REQUIRE_EQUAL(r.holder_shards.size(), 2u);
  for (const auto& s : r.holder_shards) {
    CAF_CHECK_EQUAL(s.rounds, 20u);
    CAF_CHECK_EQUAL(s.applied, 40u);
    CAF_CHECK_EQUAL(s.rejected, 0u);
  }
  CAF_CHECK_EQUAL(r.holder.rounds, 20u);
  CAF_CHECK_EQUAL(r.summary["staleness_max"].get<uint64_t>(), 0u);
  for (const auto& w : r.workers)
    CAF_CHECK(w.result.ok());
}

CAF_TEST(compressed pushes send fewer bytes and still train) {
  test::temp_dir dir;
  std::map<std::string, int64_t> bytes;
  for (const std::string c : {"none", "fp16", "bf16", "topk:0.1"}) {
    auto o = two_worker_sgd("synthetic:train=640,test=100", dir / c.substr(0, 4));
    o.epochs = 2;
    o.compress = c;
    auto r = run_sgd(o);
    CAF_CHECK_EQUAL(r.summary["compress"].get<std::string>(), c);
    bytes[c] = r.summary["pushed_bytes"].get<int64_t>();
    CAF_MESSAGE(c << ": " << bytes[c] << " bytes pushed, test accuracy " << r.test_accuracy);
    CAF_CHECK_EQUAL(r.rejected_updates, 0u);
    CAF_CHECK_GREATER_OR_EQUAL(r.test_accuracy, 0.9);
  }
  // The same pushes (same steps): half the bytes at 2 bytes a value; a tenth of
  // the values with a 4-byte index each.
  CAF_CHECK_EQUAL(bytes["fp16"] * 2, bytes["none"]);
  CAF_CHECK_EQUAL(bytes["bf16"] * 2, bytes["none"]);
  CAF_CHECK_LESS(std::abs(static_cast<double>(bytes["topk:0.1"]) / bytes["none"] - 0.2), 0.01);
  sgd_options o;
  o.dataset = "synthetic:train=64,test=10";
  o.out = dir / "refused";
  o.compress = "topk:2";
  CAF_CHECK(test::contains(test::error_of([&] { validate(o); }).second, "--compress"));
}
