#include <torch/torch.h>

#define CAF_SUITE training.schedules
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/schedules.hpp>

#include <nlohmann/json.hpp>

#include <cmath>

using namespace pnn;
using namespace pnn::training;

namespace {

/// lr before each of the first `n` steps.
std::vector<double> lrs(lr_schedule& s, size_t n) {
  std::vector<double> result;
  for (size_t i = 0; i < n; ++i) {
    result.push_back(s.lr());
    s.step();
  }
  return result;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  CAF_REQUIRE_EQUAL(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // The references are PyTorch 1.13's values printed to 10 significant digits.
    if (std::abs(got[i] - want[i]) > 1e-9 * std::abs(want[i]) + 1e-15)
      CAF_FAIL("step " << i << ": got " << got[i] << ", PyTorch gives " << want[i]);
  }
}

std::unique_ptr<lr_schedule> make(const std::string& text, int64_t steps_per_epoch = 100,
                                  int64_t epochs = 1) {
  return make_schedule(schedule_options::parse(text), 1e-3, steps_per_epoch, epochs);
}

} // namespace

CAF_TEST(cosine equals PyTorch CosineAnnealingLR and rises again past T_max) {
  auto s = make("cosine:t_max=10,eta_min=1e-6");
  CAF_CHECK(s->per_batch());
  check_close(lrs(*s, 13),
              {0.001, 0.0009755527299, 0.0009046039887, 0.0007940987335, 0.0006548539887, 0.0005005,
               0.0003461460113, 0.0002069012665, 9.639601131e-05, 2.544727011e-05, 1e-06,
               2.544727011e-05, 9.639601131e-05});
}

CAF_TEST(warm equals PyTorch CosineAnnealingWarmRestarts with T_mult 2) {
  auto s = make("warm:t_0=3,t_mult=2");
  check_close(lrs(*s, 11),
              {0.001, 0.00075, 0.00025, 0.001, 0.0009330127019, 0.00075, 0.0005, 0.00025,
               6.698729811e-05, 0.001, 0.0009829629131});
}

CAF_TEST(multistep decays by gamma at each milestone) {
  auto s = make("multistep:milestones=5/8,gamma=0.1");
  check_close(lrs(*s, 10),
              {0.001, 0.001, 0.001, 0.001, 0.001, 0.0001, 0.0001, 0.0001, 1e-05, 1e-05});
}

CAF_TEST(step decays every step_size steps) {
  auto s = make("step:step_size=2,gamma=0.5");
  check_close(lrs(*s, 6), {0.001, 0.001, 0.0005, 0.0005, 0.00025, 0.00025});
}

CAF_TEST(none keeps the learning rate) {
  auto s = make("none");
  check_close(lrs(*s, 3), {0.001, 0.001, 0.001});
}

CAF_TEST(plateau decays after patience epochs without improvement) {
  auto s = make("plateau:patience=2,factor=0.5");
  CAF_CHECK(!s->per_batch());
  for (double loss : {1.0, 0.9, 0.9, 0.9}) // two bad epochs: not yet
    s->observe(loss);
  CAF_CHECK_EQUAL(s->lr(), 0.001);
  s->observe(0.9); // third bad epoch > patience
  CAF_CHECK_EQUAL(s->lr(), 0.0005);
  s->observe(0.5); // improvement resets
  s->observe(0.5);
  s->observe(0.5);
  CAF_CHECK_EQUAL(s->lr(), 0.0005);
  // A relative improvement below the threshold (1e-4) does not count.
  s->observe(0.49999);
  CAF_CHECK_EQUAL(s->lr(), 0.00025);
}

CAF_TEST(defaults follow the run length) {
  // cosine without t_max anneals over the whole run: 3 epochs x 10 batches.
  auto s = make("cosine", 10, 3);
  auto v = lrs(*s, 31);
  CAF_CHECK(std::abs(v[30]) < 1e-12);
  CAF_CHECK(std::abs(v[15] - 0.0005) < 1e-12);
  // warm without t_0 restarts every epoch.
  auto w = make("warm", 10, 3);
  auto u = lrs(*w, 11);
  CAF_CHECK_EQUAL(u[10], 0.001);
  CAF_CHECK_LESS(u[9], 0.0001);
  // per-epoch unit counts epochs.
  auto e = make("cosine:unit=epoch", 10, 4);
  CAF_CHECK(!e->per_batch());
  auto ev = lrs(*e, 5);
  CAF_CHECK(std::abs(ev[2] - 0.0005) < 1e-12);
}

CAF_TEST(a schedule restored from its state continues identically) {
  for (const char* text : {"cosine:t_max=7", "warm:t_0=3,t_mult=2", "multistep:milestones=2/4",
                           "step:step_size=3", "plateau:patience=1", "cosine:warmup=0.08"}) {
    auto a = make(text);
    for (int i = 0; i < 5; ++i) {
      a->step();
      a->observe(1.0);
    }
    auto b = make(text);
    b->load_state(nlohmann::json::parse(a->state().dump()));
    for (int i = 0; i < 9; ++i) {
      CAF_CHECK_EQUAL(a->lr(), b->lr());
      a->step();
      b->step();
      a->observe(1.0);
      b->observe(1.0);
    }
  }
}

CAF_TEST(a warmup rises linearly by batch to the schedule it wraps) {
  // 4 batches per epoch, warm-up over half an epoch: 2 batches at 1/2 and 2/2 of
  // the schedule's rate, then the schedule itself, stepped as without warm-up.
  auto plain = make("cosine", 4, 3);
  auto warm = make("cosine:warmup=0.5", 4, 3);
  CAF_CHECK(warm->per_batch());
  const auto want = lrs(*plain, 12);
  auto got = lrs(*warm, 12);
  CAF_CHECK_EQUAL(got[0], want[0] / 2);
  for (size_t i = 1; i < got.size(); ++i)
    CAF_CHECK_EQUAL(got[i], want[i]);
  // Over 1.5 epochs of a per-epoch schedule: stepped by batch, the schedule
  // inside at each epoch's end (multistep by epoch: x0.1 after epoch 1), said by
  // end_epoch(), however many batches the epoch had.
  auto epochs = make("multistep:milestones=1,unit=epoch,warmup=1.5", 4, 3);
  CAF_CHECK(epochs->per_batch());
  got.clear();
  for (int epoch = 0; epoch < 2; ++epoch) {
    for (int batch = 0; batch < 4; ++batch) {
      got.push_back(epochs->lr());
      epochs->step();
    }
    epochs->end_epoch();
  }
  const std::vector<double> expect{1e-3 / 6, 2e-3 / 6, 3e-3 / 6, 4e-3 / 6,
                                   5e-4 / 6, 6e-4 / 6, 1e-4,     1e-4};
  CAF_REQUIRE_EQUAL(got.size(), expect.size());
  for (size_t i = 0; i < got.size(); ++i)
    CAF_CHECK(std::abs(got[i] - expect[i]) <= 1e-15);
  // An epoch of 3 batches from a shared queue: the decay comes at its end all the
  // same, not after 4 batches.
  auto short_epoch = make("multistep:milestones=1,unit=epoch,warmup=0.25", 4, 3);
  got = lrs(*short_epoch, 3);
  short_epoch->end_epoch();
  got.push_back(short_epoch->lr());
  CAF_CHECK_EQUAL(got[1], 1e-3);
  CAF_CHECK_EQUAL(got[2], 1e-3);
  CAF_CHECK(std::abs(got[3] - 1e-4) <= 1e-15);
  // Refused: a negative warm-up, and warm-up with plateau (which decays by epoch).
  auto [code, msg] = test::error_of([] { schedule_options::parse("cosine:warmup=-1"); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "warmup"));
  msg = test::error_of([] { schedule_options::parse("plateau:warmup=1"); }).second;
  CAF_CHECK(test::contains(msg, "plateau"));
}

CAF_TEST(unknown schedules and parameters are errors) {
  auto [code, msg] = test::error_of([] { schedule_options::parse("linear"); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--scheduler"));
  CAF_CHECK(test::contains(msg, "cosine"));
  auto [code2, msg2] = test::error_of([] { schedule_options::parse("cosine:tmax=3"); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "tmax"));
  auto [code3, msg3] = test::error_of([] { schedule_options::parse("cosine:t_max=abc"); });
  CAF_CHECK(code3 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg3, "expected a number"));
  auto [code4, msg4] = test::error_of([] { schedule_options::parse("warm:t_0=0"); });
  CAF_CHECK(code4 == error_code::invalid_argument);
  auto [code5, msg5] = test::error_of([] { schedule_options::parse("cosine:unit=week"); });
  CAF_CHECK(code5 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg5, "batch or epoch"));
}
