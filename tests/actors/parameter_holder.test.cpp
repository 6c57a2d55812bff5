#include <torch/torch.h>

#define CAF_SUITE actors.parameter_holder
#include <caf/test/dsl.hpp>

#include "test_util.hpp"

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/compression.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/actors/node.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/experiments/holder_file.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/flat_optimizer.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace pnn;

namespace {

param_blob blob_of(const std::vector<float>& values, uint64_t layout, uint64_t version = 0) {
  param_blob b;
  b.version = version;
  b.layout = layout;
  b.count = values.size();
  b.bytes.resize(values.size() * sizeof(float));
  std::memcpy(b.bytes.data(), values.data(), b.bytes.size());
  return b;
}

/// An update of layout 42: a delta, or with `steps` > 0 gradients of that many
/// steps at learning rate `lr`.
param_update update_of(const std::vector<float>& values, uint64_t seen, int32_t steps = 0,
                       double lr = 0) {
  auto b = blob_of(values, 42);
  param_update u;
  u.seen = seen;
  u.gradient = steps > 0;
  u.steps = std::max(1, steps);
  u.lr = lr;
  u.layout = b.layout;
  u.count = b.count;
  u.bytes = std::move(b.bytes);
  return u;
}

std::vector<float> floats_of(const param_blob& b) {
  std::vector<float> v(b.bytes.size() / sizeof(float));
  std::memcpy(v.data(), b.bytes.data(), v.size() * sizeof(float));
  return v;
}

struct fixture : test_coordinator_fixture<> {
  holder_actor holder;

  fixture() {
    holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7));
    run();
  }
  ~fixture() {
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    run();
  }

  param_blob pull() {
    auto out = std::make_shared<param_blob>();
    auto h = holder;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(h, caf::infinite, pull_atom::value).then([=](param_blob& b) {
        *out = std::move(b);
      });
    });
    run();
    return *out;
  }

  /// The new version, or the error's code.
  std::pair<uint64_t, error_code> push(const param_blob& update) {
    auto out = std::make_shared<std::pair<uint64_t, error_code>>(0, error_code::none);
    auto h = holder;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(h, caf::infinite, push_atom::value, update)
        .then([=](uint64_t v) { out->first = v; },
              [=](caf::error& e) { out->second = code_of(e); });
    });
    run();
    return *out;
  }

  /// The new version, or the error's code, of a param_update.
  std::pair<uint64_t, error_code> push(const param_update& update) {
    auto out = std::make_shared<std::pair<uint64_t, error_code>>(0, error_code::none);
    auto h = holder;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(h, caf::infinite, push_atom::value, update)
        .then([=](push_ack a) { out->first = a.version; },
              [=](caf::error& e) { out->second = code_of(e); });
    });
    run();
    return *out;
  }

  /// An update through the param_update interface; the answer (zero on error).
  push_ack push_update(const param_update& update) {
    auto out = std::make_shared<push_ack>();
    auto h = holder;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(h, caf::infinite, push_atom::value, update)
        .then([=](push_ack a) { *out = a; }, [](caf::error&) {});
    });
    run();
    return *out;
  }

  /// Replaces the holder by one starting from `start` with `options`.
  void respawn(param_blob start, holder_options options) {
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    holder = spawn_holder(sys, std::move(start), std::move(options));
    run();
  }

  holder_status status() {
    auto out = std::make_shared<holder_status>();
    auto h = holder;
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(h, caf::infinite, status_atom::value).then([=](holder_status s) { *out = s; });
    });
    run();
    return *out;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(holder_tests, fixture)

CAF_TEST(a push adds the update and counts a version) {
  auto first = pull();
  CAF_CHECK_EQUAL(first.version, 7u);
  CAF_CHECK(floats_of(first) == (std::vector<float>{1, 2, 3, 4}));
  auto [version, code] = push(blob_of({0.5f, -1, 0, 2}, 42, 7));
  CAF_CHECK(code == error_code::none);
  CAF_CHECK_EQUAL(version, 8u);
  auto after = pull();
  CAF_CHECK_EQUAL(after.version, 8u);
  CAF_CHECK(floats_of(after) == (std::vector<float>{1.5f, 1, 3, 6}));
  auto s = status();
  CAF_CHECK_EQUAL(s.applied, 1u);
  CAF_CHECK_EQUAL(s.rejected, 0u);
  CAF_CHECK_EQUAL(s.pulls, 2u);
}

CAF_TEST(wrong layouts and non finite updates are rejected and never applied) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<param_blob> bad{blob_of({1, 1, 1, 1}, 43),     // another model's layout
                              blob_of({1, 1, 1}, 42),        // too few values
                              blob_of({1, nan, 1, 1}, 42),   // NaN
                              blob_of({-inf, 1, 1, 1}, 42)}; // Inf
  auto torn = blob_of({1, 1, 1, 1}, 42);
  torn.bytes.pop_back(); // count says 4 floats, 15 bytes arrive
  bad.push_back(torn);
  for (const auto& b : bad) {
    auto [version, code] = push(b);
    CAF_CHECK(code == error_code::invalid_argument);
    CAF_CHECK_EQUAL(version, 0u);
  }
  auto s = status();
  CAF_CHECK_EQUAL(s.rejected, bad.size());
  CAF_CHECK_EQUAL(s.applied, 0u);
  auto p = pull();
  CAF_CHECK_EQUAL(p.version, 7u);
  CAF_CHECK(floats_of(p) == (std::vector<float>{1, 2, 3, 4}));
  // A good update still goes through afterwards.
  CAF_CHECK_EQUAL(push(blob_of({1, 1, 1, 1}, 42)).first, 8u);
}

CAF_TEST(a finite update whose sum overflows is rejected and the parameters kept) {
  const float big = std::numeric_limits<float>::max();
  CAF_CHECK_EQUAL(push(blob_of({0, 0, 0, big}, 42)).first, 8u); // 4 + max rounds to max
  auto [version, code] = push(blob_of({-1, -1, -1, big}, 42));  // max + max overflows
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK_EQUAL(version, 0u);
  CAF_CHECK_EQUAL(status().rejected, 1u);
  auto p = pull();
  CAF_CHECK_EQUAL(p.version, 8u);
  CAF_CHECK(floats_of(p) == (std::vector<float>{1, 2, 3, 4 + big})); // nothing half applied
}

CAF_TEST(a holder saves its parameters every N updates to a file that restores them) {
  test::temp_dir dir;
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  const auto file = dir / "holder.pt";
  holder_options o;
  o.checkpoint_every = 2;
  o.save = [file](const param_blob& p, const std::string& state) {
    CAF_CHECK(state.empty()); // no optimizer on this holder
    write_holder_file(file, {p, "", state});
  };
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7), o);
  run();
  push(blob_of({1, 1, 1, 1}, 42));
  CAF_CHECK(!std::filesystem::exists(file));
  push(blob_of({0, 0, 0, 0.5f}, 42));
  CAF_REQUIRE(std::filesystem::exists(file));
  push(blob_of({5, 5, 5, 5}, 42)); // the 3rd: not saved (every 2)
  auto saved = read_holder_file(file).params;
  CAF_CHECK_EQUAL(saved.version, 9u);
  CAF_CHECK_EQUAL(saved.layout, 42u);
  CAF_CHECK_EQUAL(saved.count, 4u);
  CAF_CHECK(floats_of(saved) == (std::vector<float>{2, 3, 4, 5.5f}));
  // A holder started from the file goes on from there.
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  holder = spawn_holder(sys, saved);
  run();
  auto now = pull();
  CAF_CHECK_EQUAL(now.version, 9u);
  CAF_CHECK(floats_of(now) == (std::vector<float>{2, 3, 4, 5.5f}));
  CAF_CHECK_EQUAL(push(blob_of({1, 1, 1, 1}, 42)).first, 10u);
}

CAF_TEST(every push answers its staleness and scaling divides a stale update by it) {
  auto with_seen = [](std::vector<float> v, uint64_t seen) { return update_of(v, seen); };
  // Unscaled: the staleness is counted, the delta added whole.
  auto a = push_update(with_seen({1, 0, 0, 0}, 7)); // built on version 7: fresh
  CAF_CHECK_EQUAL(a.version, 8u);
  CAF_CHECK_EQUAL(a.staleness, 0u);
  auto b = push_update(with_seen({1, 0, 0, 0}, 7)); // one update it has not seen
  CAF_CHECK_EQUAL(b.staleness, 1u);
  auto c = push_update(with_seen({0, 4, 0, 0}, 5)); // 9 - 5
  CAF_CHECK_EQUAL(c.staleness, 4u);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{3, 6, 3, 4}));
  // Scaled: a delta 4 versions stale counts a quarter.
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  holder_options o;
  o.staleness_scaling = true;
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7), o);
  run();
  push_update(with_seen({0, 0, 0, 0}, 7));
  push_update(with_seen({0, 0, 0, 0}, 7));
  auto d = push_update(with_seen({0, 4, 0, 0}, 5));
  CAF_CHECK_EQUAL(d.staleness, 4u);
  auto e = push_update(with_seen({0, 0, 8, 0}, 11)); // fresh: whole
  CAF_CHECK_EQUAL(e.staleness, 0u);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{1, 3, 11, 4}));
  // Averaging 4 workers: every delta counts a quarter, a stale one a quarter of that.
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  o.delta_scale = 0.25;
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7), o);
  run();
  push_update(with_seen({4, 0, 0, 0}, 7));
  push_update(with_seen({0, 0, 0, 0}, 8));
  push_update(with_seen({0, 16, 0, 0}, 5)); // 9 - 5 = 4 stale
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{2, 3, 3, 4}));
}

CAF_TEST(a holder running the optimizer takes gradients only and keeps its moments across a restart) {
  test::temp_dir dir;
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  const auto file = dir / "holder.pt";
  auto adam = training::optimizer_options::parse("adam", 0.1);
  holder_options o;
  o.optimizer = adam;
  o.checkpoint_every = 2;
  o.save = [file](const param_blob& p, const std::string& state) {
    write_holder_file(file, {p, "adam", state});
  };
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 0), o);
  run();
  auto gradient = [](std::vector<float> v, int32_t steps, uint64_t seen) {
    return update_of(v, seen, steps, 0.1);
  };
  // A delta is refused by a holder that runs the optimizer.
  CAF_CHECK(push(blob_of({1, 1, 1, 1}, 42)).second == error_code::invalid_argument);
  // The reference: the same optimizer over the same values, no actor.
  training::flat_optimizer ref(adam, blob_of({1, 2, 3, 4}, 42).bytes);
  const std::vector<std::vector<float>> grads{{1, -2, 0.5f, 0}, {3, 1, -1, 2}, {-1, 0, 2, 1}};
  const std::vector<int32_t> steps{1, 2, 1};
  for (size_t i = 0; i < 2; ++i) {
    CAF_CHECK_EQUAL(push_update(gradient(grads[i], steps[i], i)).version, i + 1);
    CAF_CHECK(ref.step(grads[i].data(), 4, steps[i], 0.1).empty());
  }
  // Saved after 2 updates: the parameters and the moments are the reference's.
  auto saved = read_holder_file(file);
  CAF_CHECK_EQUAL(saved.params.version, 2u);
  CAF_CHECK(saved.params.bytes == ref.parameter_bytes());
  training::flat_optimizer from_file(adam, saved.params.bytes);
  from_file.load_state(saved.optimizer_state);
  CAF_CHECK_EQUAL(from_file.steps(), 3); // 1 + 2 steps
  auto want = ref.state_tensors();
  auto got = from_file.state_tensors();
  CAF_REQUIRE_EQUAL(got.size(), 2u);
  CAF_REQUIRE_EQUAL(want.size(), 2u);
  for (size_t i = 0; i < got.size(); ++i) {
    CAF_CHECK_EQUAL(got[i].name, want[i].name);
    CAF_CHECK(got[i].values == want[i].values);
  }
  // A holder restarted from the file takes the next gradient as the reference does;
  // one restarted without the moments does not.
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  o.checkpoint_every = 0;
  o.optimizer_state = saved.optimizer_state;
  holder = spawn_holder(sys, saved.params, o);
  run();
  CAF_CHECK_EQUAL(push_update(gradient(grads[2], steps[2], 2)).version, 3u);
  CAF_CHECK(ref.step(grads[2].data(), 4, steps[2], 0.1).empty());
  CAF_CHECK(pull().bytes == ref.parameter_bytes());
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  o.optimizer_state.clear();
  holder = spawn_holder(sys, saved.params, o);
  run();
  push_update(gradient(grads[2], steps[2], 2));
  CAF_CHECK(pull().bytes != ref.parameter_bytes());
  // A state that does not fit is refused at spawn, naming the optimizer.
  o.optimizer_state = "not a state";
  auto [code, msg] = test::error_of([&] { spawn_holder(sys, saved.params, o); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "adam"));
}

CAF_TEST(an Adam holder taking k steps at once moves as far as the gradients spread allows) {
  // Two steps with gradients 1 and 0: the mean is 0.5, the mean square 0.5. Each
  // step moves lr * m_hat / sqrt(v_hat) = lr * 0.5 / sqrt(0.5); with the mean's
  // square (0.25) instead, each would move lr, as if the gradient were always 0.5.
  const double lr = 0.01;
  for (bool with_squares : {true, false}) {
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    holder_options o;
    o.optimizer = training::optimizer_options::parse("adam", lr);
    holder = spawn_holder(sys, blob_of({0, 0, 0, 0}, 42, 0), o);
    run();
    auto u = update_of({1, 1, 1, 1}, 0, 2, lr); // the sum of 1 and 0
    if (with_squares)
      u.squares = blob_of({1, 1, 1, 1}, 42).bytes; // 1^2 + 0^2
    CAF_REQUIRE_EQUAL(push_update(u).version, 1u);
    const float moved = -floats_of(pull())[0];
    const double want = with_squares ? 2 * lr * 0.5 / std::sqrt(0.5) : 2 * lr;
    CAF_MESSAGE((with_squares ? "with" : "without") << " squares: moved " << moved);
    CAF_CHECK_LESS(std::abs(moved - want), 1e-6);
  }
}

CAF_TEST(staleness scaling divides the learning rate of a holder running the optimizer) {
  // Two holders, one scaling: the same pushes keep them equal until one is 2
  // versions stale; its step is then half the other's.
  std::vector<float> step;
  for (bool scaling : {false, true}) {
    anon_send_exit(holder, caf::exit_reason::user_shutdown);
    holder_options o;
    o.optimizer = training::optimizer_options::parse("adam", 0.01);
    o.staleness_scaling = scaling;
    holder = spawn_holder(sys, blob_of({0, 0, 0, 0}, 42, 0), o);
    run();
    auto u = update_of({1, -2, 0.5f, 3}, 0, 1, 0.01);
    CAF_CHECK_EQUAL(push_update(u).staleness, 0u);
    CAF_CHECK_EQUAL(push_update(u).staleness, 1u); // 1: not scaled
    const float before = floats_of(pull())[0];
    CAF_CHECK_EQUAL(push_update(u).staleness, 2u);
    step.push_back(before - floats_of(pull())[0]);
  }
  CAF_MESSAGE("steps: " << step[0] << " unscaled, " << step[1] << " scaled");
  CAF_CHECK_GREATER(step[0], 0.0f);
  CAF_CHECK_LESS(std::abs(step[1] - step[0] / 2), 1e-7f);
}

CAF_TEST(a saved optimizer state of other settings or with bad moments is refused) {
  auto adam = training::optimizer_options::parse("adam", 0.01);
  training::flat_optimizer opt(adam, blob_of({1, 2, 3, 4}, 42).bytes);
  const std::vector<float> g{1, -1, 2, 0};
  CAF_REQUIRE(opt.step(g.data(), 4, 1, 0.01).empty());
  const auto state = opt.state();
  // Other betas: the moments belong to another run.
  training::flat_optimizer other(training::optimizer_options::parse("adam:beta1=0.8", 0.01),
                                 blob_of({1, 2, 3, 4}, 42).bytes);
  auto [code, msg] = test::error_of([&] { other.load_state(state); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "other settings"));
  // The same state with a NaN in the second moment.
  std::istringstream is(state);
  torch::serialize::InputArchive in;
  in.load_from(is);
  torch::serialize::OutputArchive out;
  for (const auto& key : in.keys()) {
    torch::Tensor t;
    in.read(key, t);
    if (key == "exp_avg_sq")
      t[1] = std::numeric_limits<float>::quiet_NaN();
    out.write(key, t);
  }
  std::ostringstream os;
  out.save_to(os);
  training::flat_optimizer fresh(adam, blob_of({1, 2, 3, 4}, 42).bytes);
  auto [code2, msg2] = test::error_of([&] { fresh.load_state(os.str()); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "exp_avg_sq"));
  fresh.load_state(state); // the good one fits
  CAF_CHECK_EQUAL(fresh.steps(), 1);
}

CAF_TEST(a holder refuses gradients of more steps than a worker pushes) {
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  holder_options o;
  o.optimizer = training::optimizer_options::parse("adam", 0.01);
  o.max_steps = 5;
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 0), o);
  run();
  auto u = update_of({1, 1, 1, 1}, 0, 6, 0.01);
  CAF_CHECK_EQUAL(push_update(u).version, 0u);
  CAF_CHECK_EQUAL(status().rejected, 1u);
  u.steps = 5;
  CAF_CHECK_EQUAL(push_update(u).version, 1u);
}

CAF_TEST(gradients a holder cannot step with are rejected and change nothing) {
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  holder_options o;
  o.optimizer = training::optimizer_options::parse("sgd:momentum=0.9", 0.5);
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 0), o);
  run();
  auto gradient = [](std::vector<float> v, int32_t steps, double lr) {
    auto u = update_of(v, 0, 1, lr);
    u.steps = steps; // 0 too: refused
    return u;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<param_update> bad{gradient({1, nan, 1, 1}, 1, 0.5),
                                      gradient({1, 1, 1, 1}, 0, 0.5),     // no steps
                                      gradient({1, 1, 1, 1}, 1, nan),     // learning rate
                                      gradient({1, 1, 1, 1e30f}, 1, 0.5), // beyond 1e15
                                      gradient({1e14f, 1, 1, 1}, 1, 1e30)}; // the step overflows
  for (const auto& u : bad)
    CAF_CHECK_EQUAL(push_update(u).version, 0u);
  CAF_CHECK_EQUAL(status().rejected, bad.size());
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{1, 2, 3, 4}));
  // A good one: two SGD steps of the mean gradient (1, 1, 1, 1) / 2 at lr 0.5 with
  // momentum 0.9: 0.25, then 0.25 + 0.9 * 0.25.
  CAF_CHECK_EQUAL(push_update(gradient({1, 1, 1, 1}, 2, 0.5)).version, 1u);
  auto now = floats_of(pull());
  CAF_CHECK_LESS(std::abs(now[0] - (1 - 0.25f - 0.475f)), 1e-6f);
  CAF_CHECK_LESS(std::abs(now[3] - (4 - 0.25f - 0.475f)), 1e-6f);
}

/// A push whose answer may be held back (a synchronous holder's round).
struct held_push {
  caf::actor_addr sender;
  bool answered = false;
  push_ack ack;
  error_code code = error_code::none;
};

namespace {

std::shared_ptr<held_push> send_push(caf::actor_system& sys, const holder_actor& h,
                                     const param_update& update) {
  auto out = std::make_shared<held_push>();
  out->sender = sys.spawn([=](caf::event_based_actor* self) {
    self->request(h, caf::infinite, push_atom::value, update)
      .then(
        [=](push_ack a) {
          out->answered = true;
          out->ack = a;
        },
        [=](caf::error& e) {
          out->answered = true;
          out->code = code_of(e);
        });
  }).address();
  return out;
}

} // namespace

CAF_TEST(a synchronous holder answers no push until every member pushed then applies their mean once) {
  holder_options o;
  o.sync_members = 2;
  respawn(blob_of({1, 2, 3, 4}, 42, 7), o);
  auto a = send_push(sys, holder, update_of({2, 0, 0, 4}, 7));
  run();
  CAF_CHECK(!a->answered);
  auto before = pull(); // pulls are answered at once, with the last round's parameters
  CAF_CHECK_EQUAL(before.version, 7u);
  CAF_CHECK(floats_of(before) == (std::vector<float>{1, 2, 3, 4}));
  auto b = send_push(sys, holder, update_of({0, 2, 0, -2}, 7));
  run();
  CAF_REQUIRE(a->answered && b->answered);
  CAF_CHECK(a->code == error_code::none);
  CAF_CHECK_EQUAL(a->ack.version, 8u);
  CAF_CHECK_EQUAL(b->ack.version, 8u);
  CAF_CHECK_EQUAL(a->ack.staleness, 0u);
  CAF_CHECK_EQUAL(b->ack.staleness, 0u);
  auto after = pull();
  CAF_CHECK_EQUAL(after.version, 8u);
  CAF_CHECK(floats_of(after) == (std::vector<float>{2, 3, 3, 5})); // + the mean delta
  auto s = status();
  CAF_CHECK_EQUAL(s.rounds, 1u);
  CAF_CHECK_EQUAL(s.applied, 2u);
  // A refused update takes its sender's turn (no round waits for a push that will
  // not come) and is answered when the round ends; the round applies the rest.
  auto c = send_push(sys, holder, update_of({NAN, 0, 0, 0}, 8));
  run();
  CAF_CHECK(!c->answered);
  auto d = send_push(sys, holder, update_of({4, 4, 4, 4}, 8));
  run();
  CAF_REQUIRE(c->answered && d->answered);
  CAF_CHECK(c->code == error_code::invalid_argument);
  CAF_CHECK(d->code == error_code::none);
  CAF_CHECK_EQUAL(d->ack.version, 9u);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{6, 7, 7, 9}));
  s = status();
  CAF_CHECK_EQUAL(s.rounds, 2u);
  CAF_CHECK_EQUAL(s.applied, 3u);
  CAF_CHECK_EQUAL(s.rejected, 1u);
  // The old param_blob push has no deferred answer: refused, never applied.
  CAF_CHECK(push(blob_of({1, 1, 1, 1}, 42, 9)).second == error_code::invalid_argument);
  CAF_CHECK_EQUAL(pull().version, 9u);
}

CAF_TEST(a member leaving with its push in the round does not end the round without the others) {
  holder_options o;
  o.sync_members = 3;
  respawn(blob_of({0, 0, 0, 0}, 42, 0), o);
  auto a = send_push(sys, holder, update_of({3, 0, 0, 0}, 0));
  run();
  anon_send(holder, leave_atom::value, a->sender); // a's host went, its push stays
  run();
  CAF_CHECK(!a->answered);
  auto b = send_push(sys, holder, update_of({0, 3, 0, 0}, 0));
  run();
  CAF_CHECK(!b->answered); // the round still waits for the third member
  auto c = send_push(sys, holder, update_of({0, 0, 3, 0}, 0));
  run();
  CAF_REQUIRE(a->answered && b->answered && c->answered);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{1, 1, 1, 0}));
  // Two members now.
  auto d = send_push(sys, holder, update_of({3, 0, 0, 0}, 1));
  run();
  CAF_CHECK(!d->answered);
  auto e = send_push(sys, holder, update_of({0, 3, 0, 0}, 1));
  run();
  CAF_CHECK(d->answered && e->answered);
  CAF_CHECK_EQUAL(status().rounds, 2u);
}

CAF_TEST(a member leaving ends the round it was awaited in and later rounds wait for one fewer) {
  holder_options o;
  o.sync_members = 3;
  respawn(blob_of({0, 0, 0, 0}, 42, 0), o);
  auto a = send_push(sys, holder, update_of({3, 0, 0, 0}, 0));
  auto b = send_push(sys, holder, update_of({1, 0, 0, 0}, 0));
  run();
  CAF_CHECK(!a->answered && !b->answered);
  anon_send(holder, leave_atom::value, caf::actor_addr{}); // the third finished (or its host went)
  run();
  CAF_REQUIRE(a->answered && b->answered);
  CAF_CHECK_EQUAL(a->ack.version, 1u);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{2, 0, 0, 0})); // mean of the two
  // Two members now: one push waits, the second ends the round.
  auto c = send_push(sys, holder, update_of({0, 4, 0, 0}, 1));
  run();
  CAF_CHECK(!c->answered);
  auto d = send_push(sys, holder, update_of({0, 0, 4, 0}, 1));
  run();
  CAF_REQUIRE(c->answered && d->answered);
  CAF_CHECK_EQUAL(d->ack.version, 2u);
  CAF_CHECK(floats_of(pull()) == (std::vector<float>{2, 2, 2, 0}));
  CAF_CHECK_EQUAL(status().rounds, 2u);
}

CAF_TEST(a synchronous Adam holder takes one step of the large batch per round) {
  // Two members pushing one step's gradients each: every round is one Adam step
  // with their mean, as one process training on both batches at once would take.
  const double lr = 0.01;
  holder_options o;
  o.sync_members = 2;
  o.optimizer = training::optimizer_options::parse("adam", lr);
  const auto start = blob_of({0.5f, -1, 2, 0}, 42, 0);
  respawn(start, o);
  training::flat_optimizer reference(*o.optimizer, start.bytes);
  const std::vector<std::vector<float>> a_grads{{1, -2, 0.5f, 3}, {0.2f, 0.1f, -4, 1}, {2, 2, 2, 2}};
  const std::vector<std::vector<float>> b_grads{{3, 0, -0.5f, 1}, {-0.6f, 0.3f, 1, -1}, {0, 1, 2, 3}};
  for (size_t r = 0; r < a_grads.size(); ++r) {
    auto a = send_push(sys, holder, update_of(a_grads[r], r, 1, lr));
    auto b = send_push(sys, holder, update_of(b_grads[r], r, 1, lr));
    run();
    CAF_REQUIRE(a->answered && b->answered && a->code == error_code::none);
    std::vector<float> mean(4);
    for (size_t i = 0; i < 4; ++i)
      mean[i] = (a_grads[r][i] + b_grads[r][i]) / 2;
    CAF_REQUIRE_EQUAL(reference.step(mean.data(), 4, 1, lr, nullptr), "");
  }
  const auto got = floats_of(pull());
  std::vector<float> ref(4);
  const auto ref_bytes = reference.parameter_bytes();
  std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
  double diff = 0;
  for (size_t i = 0; i < 4; ++i)
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - ref[i]));
  CAF_MESSAGE("largest difference to one Adam over the mean: " << diff);
  CAF_CHECK_LESS(diff, 1e-7);
  CAF_CHECK(got != floats_of(start)); // it did move
  CAF_CHECK_EQUAL(status().rounds, 3u);
}

CAF_TEST(a synchronous Adam round of pushes of several steps takes their mean gradient and square) {
  // A 5-step push with its squares and a 1-step push: 6 steps in 2 pushes, so the
  // round takes 3 steps with the mean gradient and mean square over all 6.
  const double lr = 0.01;
  holder_options o;
  o.sync_members = 2;
  o.max_steps = 5;
  o.optimizer = training::optimizer_options::parse("adam", lr);
  const auto start = blob_of({0.5f, -1, 2, 0}, 42, 0);
  respawn(start, o);
  const std::vector<float> g5{2, -1, 0.5f, 4}, s5{3, 1, 2, 5}, g1{1, 1, -1, 0};
  auto five = update_of(g5, 0, 5, lr);
  five.squares = blob_of(s5, 42).bytes;
  auto a = send_push(sys, holder, five);
  auto b = send_push(sys, holder, update_of(g1, 0, 1, lr));
  run();
  CAF_REQUIRE(a->answered && b->answered && a->code == error_code::none);
  training::flat_optimizer reference(*o.optimizer, start.bytes);
  std::vector<float> grad(4), square(4);
  for (size_t i = 0; i < 4; ++i) {
    grad[i] = (g5[i] + g1[i]) * 0.5f;              // 3 steps' share of the 6
    square[i] = (s5[i] + g1[i] * g1[i]) * 0.5f;
  }
  CAF_REQUIRE_EQUAL(reference.step(grad.data(), 4, 3, lr, square.data()), "");
  const auto got = floats_of(pull());
  const auto ref_bytes = reference.parameter_bytes();
  std::vector<float> ref(4);
  std::memcpy(ref.data(), ref_bytes.data(), ref_bytes.size());
  CAF_CHECK(got == ref);
  CAF_CHECK_EQUAL(reference.steps(), 3);
  // One push beyond the optimizer's limits is refused alone; the round applies the other.
  auto huge = send_push(sys, holder, update_of({1e16f, 0, 0, 0}, 1, 1, lr));
  auto fine = send_push(sys, holder, update_of(g1, 1, 1, lr));
  run();
  CAF_REQUIRE(huge->answered && fine->answered);
  CAF_CHECK(huge->code == error_code::invalid_argument);
  CAF_CHECK(fine->code == error_code::none);
  CAF_CHECK_EQUAL(fine->ack.version, 2u);
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST(damaged holder files are one clear error) {
  test::temp_dir dir;
  const auto good = holder_file_bytes({blob_of({1, 2, 3}, 5, 2), "adam", "state"});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto with_nan = holder_file_bytes({blob_of({1, nan, 3}, 5, 2), "", ""});
  auto long_state = good;
  long_state[good.size() - 5 - 8] = 100; // the state's length: 100 bytes, 5 there
  const std::vector<std::pair<std::string, std::string>> cases{
    {"empty", ""},
    {"garbage", "hello, this is not a holder file at all, no no no"},
    {"truncated", good.substr(0, good.size() - 2)},
    {"padded", good + "xxxx"},
    {"header only", good.substr(0, 32)},
    {"state longer than the file", long_state},
    {"nan", with_nan}};
  for (const auto& [name, content] : cases) {
    auto file = dir / (name + ".pt");
    pnn::write_file_atomic(file, content);
    auto [code, msg] = test::error_of([&] { read_holder_file(file); });
    CAF_MESSAGE(name << ": " << msg);
    CAF_CHECK(code == error_code::invalid_argument);
    CAF_CHECK(test::contains(msg, file.string()));
    CAF_CHECK(msg.find('\n') == std::string::npos);
  }
  auto [code, msg] = test::error_of([&] { read_holder_file(dir / "missing.pt"); });
  CAF_CHECK(code == error_code::file_not_found);
  pnn::write_file_atomic(dir / "ok.pt", good);
  auto ok = read_holder_file(dir / "ok.pt");
  CAF_CHECK(floats_of(ok.params) == (std::vector<float>{1, 2, 3}));
  CAF_CHECK_EQUAL(ok.optimizer, "adam");
  CAF_CHECK_EQUAL(ok.optimizer_state, "state");
  // A file of the first format (parameters only) still reads.
  auto v1 = good.substr(0, 32 + 12);
  v1[7] = '1';
  pnn::write_file_atomic(dir / "v1.pt", v1);
  auto old = read_holder_file(dir / "v1.pt");
  CAF_CHECK(floats_of(old.params) == (std::vector<float>{1, 2, 3}));
  CAF_CHECK(old.optimizer.empty() && old.optimizer_state.empty());
}

CAF_TEST(model parameters round trip through bytes with their layout) {
  auto a = models::make_model("lenet5", 1, 10);
  auto b = models::make_model("lenet5", 1, 10);
  auto c = models::make_model("lenet5", 1, 7);
  CAF_CHECK_EQUAL(training::layout_hash(*a), training::layout_hash(*b));
  CAF_CHECK_NOT_EQUAL(training::layout_hash(*a), training::layout_hash(*c));
  auto bytes = training::parameter_bytes(*a);
  CAF_CHECK_EQUAL(bytes.size(), static_cast<size_t>(training::parameter_floats(*a)) * 4u);
  CAF_CHECK_EQUAL(training::parameter_floats(*a), models::parameter_count(*a));
  CAF_CHECK(
    training::check_floats(bytes, static_cast<uint64_t>(training::parameter_floats(*a))).empty());
  training::load_parameter_bytes(*b, bytes);
  for (size_t i = 0; i < a->parameters().size(); ++i)
    CAF_CHECK(torch::equal(a->parameters()[i], b->parameters()[i]));
  auto [code, msg] = test::error_of([&] { training::load_parameter_bytes(*c, bytes); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "bytes, expected"));
  // A holder refuses to start from non-finite parameters.
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  bytes[3] = static_cast<char>(0x7f); // the first float becomes NaN (0x7f??????)
  bytes[2] = static_cast<char>(0xc0);
  param_blob initial{0, training::layout_hash(*a),
                     static_cast<uint64_t>(training::parameter_floats(*a)), bytes};
  auto [code2, msg2] = test::error_of([&] { spawn_holder(sys, initial); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "not finite"));
}

CAF_TEST(shard bounds balance bytes and cut at tensor boundaries within a quarter share) {
  // Even tensors: every cut on a boundary.
  CAF_CHECK_EQUAL(shard_bounds({100, 100, 100, 100}, 2), (std::vector<uint64_t>{0, 200, 400}));
  CAF_CHECK_EQUAL(shard_bounds({100, 100, 100, 100}, 1), (std::vector<uint64_t>{0, 400}));
  // One large tensor: cut inside it, evenly.
  CAF_CHECK_EQUAL(shard_bounds({1000}, 3), (std::vector<uint64_t>{0, 333, 667, 1000}));
  // A boundary 10 values from the even cut (within 1000/2/4) wins; 480 away does not.
  CAF_CHECK_EQUAL(shard_bounds({490, 510}, 2), (std::vector<uint64_t>{0, 490, 1000}));
  CAF_CHECK_EQUAL(shard_bounds({10, 10, 980}, 2), (std::vector<uint64_t>{0, 500, 1000}));
  // LeNet5's tensors in 4 shards: no shard more than a quarter share off the mean.
  const std::vector<uint64_t> lenet5{150, 6, 2400, 16, 48000, 120, 10080, 84, 840, 10};
  auto b = shard_bounds(lenet5, 4);
  CAF_REQUIRE_EQUAL(b.size(), 5u);
  const uint64_t total = b.back();
  CAF_CHECK_EQUAL(total, 61706u);
  for (size_t i = 0; i + 1 < b.size(); ++i) {
    const double size = static_cast<double>(b[i + 1] - b[i]);
    CAF_CHECK_LESS_OR_EQUAL(std::abs(size - total / 4.0), total / 4.0 / 2);
  }
  // As many shards as values: one each; more, or none, is an error.
  CAF_CHECK_EQUAL(shard_bounds({2, 1}, 3), (std::vector<uint64_t>{0, 1, 2, 3}));
  auto [code, msg] = test::error_of([&] { shard_bounds({2, 1}, 4); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "4 shards of 3 values"));
  CAF_CHECK(test::error_of([&] { shard_bounds({2, 1}, 0); }).first == error_code::invalid_argument);
}

CAF_TEST_FIXTURE_SCOPE(shard_tests, fixture)

CAF_TEST(a compressed push is widened and applied and a malformed one refused) {
  // top-k of a delta: half the values, the largest in magnitude, at their places.
  std::vector<float> residual;
  const std::vector<float> delta{0.5f, 5.0f, 0.25f, -7.0f};
  auto u = update_of({0, 0, 0, 0}, 0);
  encode_update(compression::parse("topk:0.5"), delta.data(), nullptr, 4, residual, u);
  CAF_CHECK_EQUAL(u.bytes.size(), 2 * sizeof(float));
  CAF_CHECK_EQUAL(u.indices.size(), 2 * sizeof(uint32_t));
  CAF_CHECK_EQUAL(residual, (std::vector<float>{0.5f, 0, 0.25f, 0})); // kept for later
  auto [version, code] = push(u);
  CAF_CHECK(code == error_code::none);
  CAF_CHECK_EQUAL(floats_of(pull()), (std::vector<float>{1, 7, 3, -3}));
  // The next push carries what was left out.
  const std::vector<float> none{0, 0, 0, 0};
  encode_update(compression::parse("topk:0.5"), none.data(), nullptr, 4, residual, u);
  u.seen = version;
  CAF_CHECK(push(u).second == error_code::none);
  CAF_CHECK_EQUAL(floats_of(pull()), (std::vector<float>{1.5f, 7, 3.25f, -3}));
  // Malformed: an index out of range, indices not increasing, sizes that do not fit,
  // and a count that is not the holder's (never widened).
  auto bad = u;
  std::memset(bad.indices.data(), 0xff, 4);
  CAF_CHECK(push(bad).second == error_code::invalid_argument);
  bad = u;
  std::swap_ranges(bad.indices.begin(), bad.indices.begin() + 4, bad.indices.begin() + 4);
  CAF_CHECK(push(bad).second == error_code::invalid_argument);
  bad = u;
  bad.bytes.resize(4);
  CAF_CHECK(push(bad).second == error_code::invalid_argument);
  bad = u;
  bad.count = uint64_t{1} << 40;
  CAF_CHECK(push(bad).second == error_code::invalid_argument);
  bad = u;
  bad.encoding = 9;
  CAF_CHECK(push(bad).second == error_code::invalid_argument);
  CAF_CHECK_EQUAL(floats_of(pull()), (std::vector<float>{1.5f, 7, 3.25f, -3})); // unchanged
  // fp16: 2 bytes a value, rounding kept for the next push.
  residual.clear();
  const std::vector<float> small{1e-4f, 0.1f, -3.0f, 1000.0f};
  encode_update(compression::parse("fp16"), small.data(), nullptr, 4, residual, u);
  CAF_CHECK_EQUAL(u.bytes.size(), 8u);
  CAF_CHECK(push(u).second == error_code::none);
  auto after = floats_of(pull());
  const std::vector<float> want{1.5f + 1e-4f, 7.1f, 0.25f, 997.0f};
  for (size_t i = 0; i < 4; ++i) {
    CAF_CHECK_LESS(std::abs(after[i] - want[i]), 1e-3 * std::max(1.0f, std::abs(want[i])));
    CAF_CHECK_EQUAL(small[i] - residual[i], from_half(to_half(small[i])));
  }
}

CAF_TEST(half and bfloat16 conversions round to nearest and keep specials) {
  CAF_CHECK_EQUAL(from_half(to_half(1.0f)), 1.0f);
  CAF_CHECK_EQUAL(from_half(to_half(65504.0f)), 65504.0f);
  CAF_CHECK(std::isinf(from_half(to_half(1e6f))));
  CAF_CHECK(std::isnan(from_half(to_half(std::nanf("")))));
  CAF_CHECK_EQUAL(from_half(to_half(-0.0f)), 0.0f);
  CAF_CHECK_EQUAL(from_half(to_half(5.9604645e-8f)), 5.9604645e-8f); // the least subnormal
  CAF_CHECK_EQUAL(to_half(1.0f + 1.0f / 2048), to_half(1.0f)); // a tie: to even
  CAF_CHECK_EQUAL(to_half(1.0f + 3.0f / 2048), to_half(1.0f + 1.0f / 512)); // a tie: up, to even
  CAF_CHECK_EQUAL(from_bf16(to_bf16(1.0f)), 1.0f);
  CAF_CHECK_EQUAL(from_bf16(to_bf16(3.14159265f)), 3.140625f);
  CAF_CHECK(std::isnan(from_bf16(to_bf16(std::nanf("")))));
  double worst16 = 0, worstbf = 0;
  for (float v = 1e-3f; v < 6e4f; v *= 1.0137f) {
    worst16 = std::max(worst16, std::abs(from_half(to_half(v)) - v) / static_cast<double>(v));
    worstbf = std::max(worstbf, std::abs(from_bf16(to_bf16(v)) - v) / static_cast<double>(v));
  }
  CAF_CHECK_LESS_OR_EQUAL(worst16, 1.0 / 2048); // half an ulp of 10 mantissa bits
  CAF_CHECK_LESS_OR_EQUAL(worstbf, 1.0 / 256);  // of 7 bits
  CAF_CHECK(test::error_of([] { compression::parse("topk:0"); }).first
            == error_code::invalid_argument);
  CAF_CHECK(test::contains(test::error_of([] { compression::parse("zip"); }).second, "--compress"));
  CAF_CHECK_EQUAL(compression::parse("topk:0.01").name(), "topk:0.01");
}

CAF_TEST(a shard refuses a slice of another shard even of the same size) {
  const uint64_t model_layout = 42;
  const auto a = shard_layout(model_layout, 0, 2), b = shard_layout(model_layout, 2, 4);
  CAF_CHECK_NOT_EQUAL(a, b);
  CAF_CHECK_NOT_EQUAL(a, model_layout);
  auto shard1 = spawn_holder(sys, blob_of({3, 4}, b));
  auto u = update_of({1, 1}, 0);
  u.layout = a; // shard 0's slice
  auto refused = std::make_shared<caf::error>();
  sys.spawn([=](caf::event_based_actor* self) {
    self->request(shard1, caf::infinite, push_atom::value, u)
      .then([](push_ack&) {}, [=](caf::error& e) { *refused = e; });
  });
  run();
  CAF_CHECK(*refused);
  CAF_CHECK(test::contains(to_string(*refused), "layout"));
  anon_send_exit(shard1, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a node runs holder shards for a coordinator until its home goes and within its limit) {
  // A threaded actor system: the node, its shards and their homes as serve runs them.
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 2);
  caf::actor_system real{cfg};
  caf::scoped_actor self{real};
  const auto wait = std::chrono::seconds(30);
  node_options no;
  no.limits.max_holder_bytes = 3 * 100 * 4 + (64 << 10) + 16; // one Adam shard of 100 values
  auto n = spawn_node(real, no);
  auto saved = std::make_shared<std::atomic<int>>(0);
  param_blob shape;
  shape.layout = 7;
  shape.count = 100;
  auto save = [saved](uint32_t, const param_blob& p, const std::string& state) {
    if (p.version > 0 && !state.empty())
      ++*saved;
  };
  holder_spec spec;
  spec.initial = blob_of(std::vector<float>(100, 1.0f), 7);
  spec.optimizer = "adam";
  spec.lr = 1e-3;
  spec.checkpoint_every = 1;
  auto ask_spawn = [&](const holder_spec& sp, const holder_home_actor& h) {
    std::pair<holder_actor, std::string> out;
    self->request(n, wait, spawn_atom::value, sp, h)
      .receive([&](holder_actor& a, bulk_endpoint&) { out.first = a; },
               [&](caf::error& e) { out.second = real.render(e); });
    return out;
  };
  auto home = spawn_holder_home(real, 0, shape, save);
  auto first = ask_spawn(spec, home);
  CAF_REQUIRE(first.first);
  auto shard = first.first;
  // A push: the shard steps Adam and its checkpoint goes home.
  auto u = update_of(std::vector<float>(100, 0.5f), 0, 1, 1e-3);
  u.layout = 7;
  self->request(shard, wait, push_atom::value, u)
    .receive([](push_ack& a) { CAF_CHECK_EQUAL(a.version, 1u); },
             [&](caf::error& e) { CAF_FAIL("push refused: " << real.render(e)); });
  for (int i = 0; i < 3000 && *saved == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CAF_CHECK_EQUAL(saved->load(), 1);
  // A second shard would be over the limit: refused, naming the flag.
  auto second = ask_spawn(spec, home);
  CAF_CHECK(!second.first);
  CAF_MESSAGE(second.second);
  CAF_CHECK(test::contains(second.second, "--max-holder-mb"));
  // The coordinator goes (its home ends): the shard ends and its bytes are free.
  self->monitor(shard);
  caf::anon_send_exit(home, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive([&](caf::down_msg& d) { down = d.source == shard.address(); },
                caf::after(wait) >> [] {});
  CAF_CHECK(down);
  auto home2 = spawn_holder_home(real, 0, shape, save);
  std::pair<holder_actor, std::string> third;
  for (int i = 0; i < 3000 && !third.first; ++i) { // the node hears of the shard's end too
    third = ask_spawn(spec, home2);
    if (!third.first)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CAF_CHECK(third.first);
  // A bad optimizer spec is refused, not run.
  auto bad = spec;
  bad.optimizer = "adamx";
  bad.initial.count = bad.initial.bytes.size() / sizeof(float);
  caf::anon_send_exit(third.first, caf::exit_reason::user_shutdown);
  std::pair<holder_actor, std::string> fourth;
  for (int i = 0; i < 3000; ++i) {
    fourth = ask_spawn(bad, home2);
    if (!test::contains(fourth.second, "--max-holder-mb"))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CAF_CHECK(!fourth.first);
  CAF_MESSAGE(fourth.second);
  CAF_CHECK(test::contains(fourth.second, "adamx"));
  caf::anon_send_exit(home2, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(n, caf::exit_reason::user_shutdown);
}

namespace {

/// A plain TCP connection to 127.0.0.1:port (-1 on failure).
int raw_connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/// Whether the server closed `fd` (a read gets its end, not a timeout).
bool closed_by_peer(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

} // namespace

CAF_TEST(a bulk port serves a holder pulls and pushes to its token only) {
  auto port = std::make_shared<bulk_server>("127.0.0.1");
  CAF_REQUIRE_GREATER(port->port(), 0);
  bulk_endpoint at;
  at.host = "127.0.0.1";
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7), {}, port, &at);
  run();
  CAF_REQUIRE_EQUAL(at.port, port->port());
  CAF_REQUIRE_EQUAL(at.token.size(), 32u);
  auto c = bulk_connection::open(at, 10);
  CAF_REQUIRE(c);
  auto& conn = **c;
  CAF_CHECK_EQUAL(conn.layout(), 42u);
  CAF_CHECK_EQUAL(conn.count(), 4u);
  // A pull: the holder's version and values, and counted as the actor's are.
  param_blob got;
  CAF_REQUIRE(!conn.pull(got));
  CAF_CHECK_EQUAL(got.version, 7u);
  CAF_CHECK_EQUAL(floats_of(got), (std::vector<float>{1, 2, 3, 4}));
  // A push is applied as through the actor: a version, its staleness, the values.
  auto ack = conn.push(update_of({1, 1, 1, 1}, 7));
  CAF_REQUIRE(ack);
  CAF_CHECK_EQUAL(ack->version, 8u);
  CAF_CHECK_EQUAL(ack->staleness, 0u);
  push(update_of({0, 0, 0, 1}, 7)); // one through the actor: stale by one for the next
  ack = conn.push(update_of({1, 0, 0, 0}, 8));
  CAF_REQUIRE(ack);
  CAF_CHECK_EQUAL(ack->version, 10u);
  CAF_CHECK_EQUAL(ack->staleness, 1u);
  auto now = pull();
  CAF_CHECK_EQUAL(now.version, 10u);
  CAF_CHECK_EQUAL(floats_of(now), (std::vector<float>{3, 3, 4, 6}));
  auto st = status();
  CAF_CHECK_EQUAL(st.applied, 3u);
  CAF_CHECK_EQUAL(st.pulls, 2u);
  CAF_CHECK_EQUAL(st.streamed, 2u); // the port's pushes, summed as they arrived
  // Refused as the actor refuses, with the reason; the connection goes on.
  auto wrong = update_of({1, 1, 1, 1}, 10);
  wrong.layout = 43;
  ack = conn.push(wrong);
  CAF_REQUIRE(!ack);
  CAF_CHECK_EQUAL(code_of(ack.error()), error_code::invalid_argument);
  CAF_MESSAGE(to_string(ack.error()));
  CAF_CHECK(test::contains(to_string(ack.error()), "layout 43"));
  auto nan = update_of({1, std::nanf(""), 1, 1}, 10);
  CAF_CHECK(!conn.push(nan));
  CAF_REQUIRE(!conn.pull(got));
  CAF_CHECK_EQUAL(floats_of(got), (std::vector<float>{3, 3, 4, 6}));
  CAF_CHECK_EQUAL(status().rejected, 2u);
  // Another token: no connection.
  auto other = at;
  other.token[0] = other.token[0] == 'a' ? 'b' : 'a';
  auto refused = bulk_connection::open(other, 10);
  CAF_REQUIRE(!refused);
  CAF_MESSAGE(to_string(refused.error()));
  CAF_CHECK(test::contains(to_string(refused.error()), "does not serve this shard"));
  // What is not a frame closes that connection, before any allocation of a
  // claimed size; the port goes on serving.
  {
    const int fd = raw_connect(at.port);
    CAF_REQUIRE_GREATER_OR_EQUAL(fd, 0);
    std::string text = "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + std::string(20, ' ');
    CAF_CHECK_EQUAL(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    CAF_CHECK(closed_by_peer(fd));
    ::close(fd);
  }
  {
    const int fd = raw_connect(at.port);
    CAF_REQUIRE_GREATER_OR_EQUAL(fd, 0);
    char hello[40];
    std::memcpy(hello, "PNNB", 4);
    const uint32_t version = 1;
    std::memcpy(hello + 4, &version, 4);
    std::memcpy(hello + 8, at.token.data(), 32);
    CAF_CHECK_EQUAL(::write(fd, hello, sizeof hello), 40);
    char welcome[24];
    CAF_CHECK_EQUAL(::recv(fd, welcome, sizeof welcome, MSG_WAITALL), 24);
    // A push claiming 1 TiB of values for a shard of 4 (the op, then the
    // header: seen, layout, count, lr, steps, flags, then the byte counts).
    std::vector<char> frame(4 + 64, 0);
    const uint32_t op = 2;
    std::memcpy(frame.data(), &op, 4);
    const uint64_t huge = uint64_t{1} << 40;
    std::memcpy(frame.data() + 4 + 40, &huge, 8);
    CAF_CHECK_EQUAL(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    CAF_CHECK(closed_by_peer(fd));
    ::close(fd);
  }
  CAF_REQUIRE(!conn.pull(got));
  CAF_CHECK_EQUAL(got.version, 10u);
  // At most 64 connections that have not presented a token at once: another
  // client waits in the listen queue until they go (here, it gives up after 1 s).
  {
    std::vector<int> idle;
    for (int i = 0; i < 64; ++i)
      idle.push_back(raw_connect(at.port));
    std::this_thread::sleep_for(std::chrono::milliseconds(200)); // all accepted
    CAF_CHECK(!bulk_connection::open(at, 1));
    for (int fd : idle)
      ::close(fd);
    auto again = bulk_connection::open(at, 10);
    CAF_REQUIRE(again);
    CAF_CHECK(!(*again)->pull(got));
  }
  // The holder ends: its port no longer serves it, and the client says so.
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  run();
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7));
  run();
  auto gone = conn.pull(got);
  CAF_REQUIRE(gone);
  CAF_MESSAGE(to_string(gone));
  CAF_CHECK(gone.category() != error_category);
  CAF_CHECK(conn.pull(got)); // and stays closed
  CAF_CHECK(!bulk_connection::open(at, 10));
}

CAF_TEST(a bulk push that would overflow is refused whole even after bounded pushes) {
  // The magnitudes a bulk port checks as values arrive bound the sums, so that
  // most pushes take one pass; one that could overflow is checked value by value.
  std::vector<char> raw(4 * sizeof(float) + 1);
  const float some[4] = {1, -5, 2, 0};
  std::memcpy(raw.data() + 1, some, sizeof some); // any alignment
  CAF_CHECK_EQUAL(training::finite_max_abs(raw.data() + 1, 4), 5.0f);
  const float bad[2] = {1, std::numeric_limits<float>::infinity()};
  CAF_CHECK_LESS(training::finite_max_abs(reinterpret_cast<const char*>(bad), 2), 0.0f);
  // The same bound from the sums the port makes: in place, deltas at any alignment.
  float params[4] = {1, 1, 1, 1};
  float deltas = 0;
  CAF_CHECK_EQUAL(training::add_scaled(params, raw.data() + 1, 0.5f, params, 4, &deltas), 2.0f);
  CAF_CHECK_EQUAL(params[1], -1.5f);
  CAF_CHECK_EQUAL(deltas, 5.0f);
  float sums[2];
  const float huge[2] = {3e38f, 3e38f};
  CAF_CHECK_LESS(
    training::add_scaled(huge, reinterpret_cast<const char*>(huge), 1, sums, 2, &deltas), 0.0f);
  CAF_CHECK_EQUAL(deltas, 3e38f); // the values are finite; their sums are not
  CAF_CHECK_LESS(
    training::add_scaled(params, reinterpret_cast<const char*>(bad), 1, sums, 2, &deltas), 0.0f);
  CAF_CHECK_LESS(deltas, 0.0f);
  auto port = std::make_shared<bulk_server>("127.0.0.1");
  bulk_endpoint at{"127.0.0.1", 0, ""};
  anon_send_exit(holder, caf::exit_reason::user_shutdown);
  holder = spawn_holder(sys, blob_of({1e38f, 1, 2, 3}, 42), {}, port, &at);
  run();
  auto c = bulk_connection::open(at, 10);
  CAF_REQUIRE(c);
  for (int i = 0; i < 3; ++i)
    CAF_CHECK((*c)->push(update_of({1e37f, 1, 1, 1}, 0)));
  auto big = (*c)->push(update_of({3e38f, 0, 0, 0}, 0)); // 1.3e38 + 3e38 > FLT_MAX
  CAF_REQUIRE(!big);
  CAF_MESSAGE(to_string(big.error()));
  CAF_CHECK(test::contains(to_string(big.error()), "not finite"));
  param_blob got;
  CAF_REQUIRE(!(*c)->pull(got));
  float first = 1e38f;
  for (int i = 0; i < 3; ++i)
    first += 1e37f;
  CAF_CHECK_EQUAL(floats_of(got), (std::vector<float>{first, 4, 5, 6}));
  CAF_CHECK_EQUAL(got.version, 3u);
}

namespace {

/// What a bulk port does with a push summed as it arrives: the sum of the
/// shard's base and the scaled values, in two chunks, then the end.
caf::expected<push_ack> summed_push(bulk_shard& shard, bulk_shard::sum sum, const param_update& u) {
  const auto* base = reinterpret_cast<const float*>(sum.base->bytes.data());
  auto* out = reinterpret_cast<float*>(sum.out->bytes.data());
  const uint64_t half = u.count / 2;
  float values = 0, rest_values = 0;
  float most = training::add_scaled(base, u.bytes.data(), sum.scale, out, half, &values);
  const float rest = training::add_scaled(base + half, u.bytes.data() + half * sizeof(float),
                                          sum.scale, out + half, u.count - half, &rest_values);
  most = most < 0 || rest < 0 ? -1.0f : std::max(most, rest);
  values = values < 0 || rest_values < 0 ? -1.0f : std::max(values, rest_values);
  return shard.end_sum(std::move(sum), u, values, most);
}

} // namespace

CAF_TEST(a bulk pull shares the parameters and a change writes the next version beside them) {
  auto shard = make_holder_shard(blob_of({1, 2, 3, 4}, 42, 7));
  auto first = shard->pull();
  CAF_CHECK_EQUAL(shard->pull().get(), first.get()); // one version, one buffer, no copy
  CAF_REQUIRE(shard->push(update_of({1, 1, 1, 1}, 7), -1));
  // The pulled version is left alone while its pull still sends it.
  CAF_CHECK_EQUAL(first->version, 7u);
  CAF_CHECK_EQUAL(floats_of(*first), (std::vector<float>{1, 2, 3, 4}));
  auto second = shard->pull();
  CAF_CHECK_NOT_EQUAL(second.get(), first.get());
  CAF_CHECK_EQUAL(second->version, 8u);
  CAF_CHECK_EQUAL(floats_of(*second), (std::vector<float>{2, 3, 4, 5}));
  // Once no pull holds it, a change is made in place, without a new buffer.
  const auto* values = second->bytes.data();
  first.reset();
  second.reset();
  CAF_REQUIRE(shard->push(update_of({1, 0, 0, 0}, 8), -1));
  auto third = shard->pull();
  CAF_CHECK_EQUAL(third->bytes.data(), values);
  CAF_CHECK_EQUAL(floats_of(*third), (std::vector<float>{3, 3, 4, 5}));
  // Two versions pulled and still being sent: the buffer of the version before
  // (the one the next is written beside) is not reused while a pull holds it.
  CAF_REQUIRE(shard->push(update_of({0, 1, 0, 0}, 9), -1)); // beside third
  auto fourth = shard->pull();
  CAF_REQUIRE(shard->push(update_of({0, 0, 1, 0}, 10), -1)); // not into third's buffer
  CAF_CHECK_EQUAL(third->version, 9u);
  CAF_CHECK_EQUAL(floats_of(*third), (std::vector<float>{3, 3, 4, 5}));
  CAF_CHECK_EQUAL(fourth->version, 10u);
  CAF_CHECK_EQUAL(floats_of(*fourth), (std::vector<float>{3, 4, 4, 5}));
  // Nor by a sum begun meanwhile.
  bulk_shard::sum sum;
  auto u = update_of({1, 1, 1, 1}, 11);
  CAF_REQUIRE(shard->begin_sum(u, sum));
  CAF_CHECK_NOT_EQUAL(sum.out.get(), third.get());
  CAF_CHECK_NOT_EQUAL(sum.out.get(), fourth.get());
  CAF_REQUIRE(summed_push(*shard, std::move(sum), u));
  CAF_CHECK_EQUAL(floats_of(*third), (std::vector<float>{3, 3, 4, 5}));
  CAF_CHECK_EQUAL(floats_of(*fourth), (std::vector<float>{3, 4, 4, 5}));
  CAF_CHECK_EQUAL(floats_of(*shard->pull()), (std::vector<float>{4, 5, 6, 6}));
  // With the optimizer in the holder, a pull gets a copy per version.
  holder_options o;
  o.optimizer = training::optimizer_options::parse("sgd", 0.5);
  auto opt = make_holder_shard(blob_of({1, 2, 3, 4}, 42), o);
  auto before = opt->pull();
  CAF_CHECK_EQUAL(opt->pull().get(), before.get());
  CAF_REQUIRE(opt->push(update_of({2, 2, 2, 2}, 0, 1, 0.5), -1));
  CAF_CHECK_EQUAL(floats_of(*before), (std::vector<float>{1, 2, 3, 4}));
  CAF_CHECK_EQUAL(floats_of(*opt->pull()), (std::vector<float>{0, 1, 2, 3}));
}

CAF_TEST(a bulk push summed as it arrives is the next version unless another came first) {
  holder_options o;
  o.staleness_scaling = true;
  auto shard = make_holder_shard(blob_of({1, 2, 3, 4}, 42, 7), o);
  // One sum at a time: a second push meanwhile goes the usual way.
  bulk_shard::sum sum;
  auto u = update_of({1, 1, 1, 1}, 7);
  CAF_REQUIRE(shard->begin_sum(u, sum));
  bulk_shard::sum other;
  CAF_CHECK(!shard->begin_sum(u, other));
  CAF_CHECK_EQUAL(sum.scale, 1.0f);
  auto ack = summed_push(*shard, std::move(sum), u);
  CAF_REQUIRE(ack);
  CAF_CHECK_EQUAL(ack->version, 8u);
  CAF_CHECK_EQUAL(floats_of(*shard->pull()), (std::vector<float>{2, 3, 4, 5}));
  // Another push lands while one is being summed: the sum's base is no longer
  // the current version, so the update is added to the new one as a push would be.
  u = update_of({2, 2, 2, 2}, 8);
  CAF_REQUIRE(shard->begin_sum(u, sum));
  CAF_REQUIRE(shard->push(update_of({0, 0, 0, 10}, 8), -1)); // version 9
  ack = summed_push(*shard, std::move(sum), u);
  CAF_REQUIRE(ack);
  CAF_CHECK_EQUAL(ack->version, 10u);
  CAF_CHECK_EQUAL(ack->staleness, 1u);
  CAF_CHECK_EQUAL(floats_of(*shard->pull()), (std::vector<float>{4, 5, 6, 17}));
  // A stale push is summed scaled by 1/staleness.
  u = update_of({4, 4, 4, 4}, 8);
  CAF_REQUIRE(shard->begin_sum(u, sum));
  CAF_CHECK_EQUAL(sum.scale, 0.5f);
  ack = summed_push(*shard, std::move(sum), u);
  CAF_REQUIRE(ack);
  CAF_CHECK_EQUAL(ack->staleness, 2u);
  CAF_CHECK_EQUAL(floats_of(*shard->pull()), (std::vector<float>{6, 7, 8, 19}));
  // A sum dropped unfinished (its connection failed) lets the next one begin.
  CAF_REQUIRE(shard->begin_sum(u, sum));
  sum = {};
  // A value that is not finite: refused as any push, naming it; nothing changes.
  auto bad = update_of({1, 1, std::nanf(""), 1}, 11);
  CAF_REQUIRE(shard->begin_sum(bad, sum));
  ack = summed_push(*shard, std::move(sum), bad);
  CAF_REQUIRE(!ack);
  CAF_MESSAGE(to_string(ack.error()));
  CAF_CHECK(test::contains(to_string(ack.error()), "value 2 is not finite"));
  auto now = shard->pull();
  CAF_CHECK_EQUAL(now->version, 11u);
  CAF_CHECK_EQUAL(floats_of(*now), (std::vector<float>{6, 7, 8, 19}));
  // A push whose values' bound is known (checked as they arrived) after summed
  // ones: one pass, bounded by the sums' largest magnitude.
  CAF_REQUIRE(shard->push(update_of({1, 1, 1, -1}, 11), 1.0f));
  CAF_CHECK_EQUAL(floats_of(*shard->pull()), (std::vector<float>{7, 8, 9, 18}));
  // Not summed: other layouts, compressed values, gradients.
  auto wrong = update_of({1, 1, 1, 1}, 11);
  wrong.layout = 43;
  CAF_CHECK(!shard->begin_sum(wrong, sum));
  auto half = update_of({1, 1, 1, 1}, 11);
  half.encoding = 1;
  CAF_CHECK(!shard->begin_sum(half, sum));
  CAF_CHECK(!shard->begin_sum(update_of({1, 1, 1, 1}, 11, 1, 0.1), sum));
}

CAF_TEST(a synchronous holder is not served on a bulk port) {
  auto port = std::make_shared<bulk_server>("127.0.0.1");
  holder_options o;
  o.sync_members = 2;
  std::string why;
  try {
    spawn_holder(sys, blob_of({1, 2}, 42), o, port);
  } catch (const pnn::error& e) {
    why = e.what();
  }
  CAF_CHECK(test::contains(why, "synchronous"));
}


CAF_TEST_FIXTURE_SCOPE_END()
