#include <torch/torch.h>

#define CAF_SUITE actors.metric_collector
#include <caf/test/dsl.hpp>

#include "test_util.hpp"

#include <pnn/actors/metric_collector.hpp>
#include <pnn/experiments/session.hpp>

#include <caf/all.hpp>

using namespace pnn;

namespace {

struct fixture : test_coordinator_fixture<> {
  test::temp_dir dir;
  collector_actor collector;

  fixture() {
    collector_options o;
    record_to_files(o, dir.path());
    o.progress = "none";
    o.total_jobs = 1;
    collector = spawn_collector(sys, o);
    sched.run();
  }

  ~fixture() {
    anon_send_exit(collector, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Sends a checkpoint; true when the collector answers that it stored it.
  bool checkpoint(const std::filesystem::path& job_dir, int64_t epoch, const std::string& text) {
    job_checkpoint c;
    c.out_dir = job_dir.string();
    c.epoch = epoch;
    c.bytes.assign(text.begin(), text.end());
    auto answer = self->request(collector, caf::infinite, checkpoint_atom::value, std::move(c));
    sched.run(); // messages only: the CPU sampling timer stays pending
    bool stored = false;
    answer.receive([&] { stored = true; }, [&](caf::error&) { stored = false; });
    return stored;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(collector_tests, fixture)

CAF_TEST(remote checkpoints land in the job folder and a stale one never replaces latest) {
  const auto job = dir / "lenet5" / "cosine" / "fold0";
  CAF_CHECK(checkpoint(job, 1, "epoch one"));
  CAF_CHECK(checkpoint(job, 3, "epoch three"));
  CAF_CHECK_EQUAL(test::read_text(job / "latest.pt"), "epoch three");
  CAF_CHECK_EQUAL(test::read_text(job / "epoch_1.pt"), "epoch one");
  // A host that was dropped wakes up and sends its (older) epoch 2.
  CAF_CHECK(!checkpoint(job, 2, "stale epoch two")); // answered: refused
  CAF_CHECK_EQUAL(test::read_text(job / "latest.pt"), "epoch three");
  CAF_CHECK(!std::filesystem::exists(job / "epoch_2.pt"));
  // The resumed job goes on from epoch 3.
  checkpoint(job, 4, "epoch four");
  CAF_CHECK_EQUAL(test::read_text(job / "latest.pt"), "epoch four");
  // Another job's folder has its own count.
  checkpoint(dir / "lenet5" / "cosine" / "fold1", 1, "other");
  CAF_CHECK_EQUAL(test::read_text(dir / "lenet5" / "cosine" / "fold1" / "latest.pt"), "other");
}

CAF_TEST(a checkpoint for a folder outside the run is dropped) {
  test::temp_dir elsewhere;
  CAF_CHECK(!checkpoint(elsewhere / "evil", 1, "x"));
  CAF_CHECK(!checkpoint(dir / ".." / "escape", 1, "x"));
  CAF_CHECK(!std::filesystem::exists(elsewhere / "evil"));
  CAF_CHECK(!std::filesystem::exists(dir / ".." / "escape" / "latest.pt"));
}

CAF_TEST_FIXTURE_SCOPE_END()
