#include <torch/torch.h>

#define CAF_SUITE actors.parameter_holder
#include <caf/test/dsl.hpp>

#include "test_util.hpp"

#include <pnn/actors/errors.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/experiments/holder_file.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>

#include <cmath>
#include <cstring>
#include <limits>

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
  o.save = [file](const param_blob& p) { write_holder_file(file, p); };
  holder = spawn_holder(sys, blob_of({1, 2, 3, 4}, 42, 7), o);
  run();
  push(blob_of({1, 1, 1, 1}, 42));
  CAF_CHECK(!std::filesystem::exists(file));
  push(blob_of({0, 0, 0, 0.5f}, 42));
  CAF_REQUIRE(std::filesystem::exists(file));
  push(blob_of({5, 5, 5, 5}, 42)); // the 3rd: not saved (every 2)
  auto saved = read_holder_file(file);
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

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST(damaged holder files are one clear error) {
  test::temp_dir dir;
  const auto good = holder_file_bytes(blob_of({1, 2, 3}, 5, 2));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto with_nan = holder_file_bytes(blob_of({1, nan, 3}, 5, 2));
  const std::vector<std::pair<std::string, std::string>> cases{
    {"empty", ""},
    {"garbage", "hello, this is not a holder file at all, no no no"},
    {"truncated", good.substr(0, good.size() - 2)},
    {"padded", good + "xxxx"},
    {"header only", good.substr(0, 32)},
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
  CAF_CHECK(floats_of(read_holder_file(dir / "ok.pt")) == (std::vector<float>{1, 2, 3}));
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
