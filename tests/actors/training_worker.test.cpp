#include <torch/torch.h>

#define CAF_SUITE actors.training_worker
#include <caf/test/dsl.hpp>

#include "actor_util.hpp"
#include "test_util.hpp"

#include <pnn/actors/node.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>

#include <cmath>
#include <optional>

using namespace pnn;

namespace {

struct fixture : test_coordinator_fixture<> {
  std::shared_ptr<test::sink_record> events = std::make_shared<test::sink_record>();
  std::vector<job_progress>& progress = events->progress;
  event_sink_actor sink;

  fixture() {
    sink = test::spawn_recording_sink(sys, events);
    run();
  }

  ~fixture() {
    anon_send_exit(sink, caf::exit_reason::user_shutdown);
    run();
  }

  static job_spec tiny_job() {
    job_spec j;
    j.id = 7;
    j.model = "lenet5";
    j.scheduler = "cosine";
    j.dataset = "synthetic:train=192,test=10";
    j.folds = 3;
    j.fold = 1;
    j.epochs = 2;
    j.batch_size = 32;
    return j;
  }

  /// Runs `job` on a fresh worker and returns its result (run() drives every slice).
  job_result run_job(const job_spec& job, worker_options o = {},
                     std::optional<job_checkpoint> checkpoint = std::nullopt) {
    o.progress_interval = 0; // an event per slice
    auto w = spawn_worker(sys, sink, o);
    auto result = std::make_shared<job_result>();
    sys.spawn([=](caf::event_based_actor* self) {
      auto take = [result](job_result& r) { *result = std::move(r); };
      if (checkpoint)
        self->request(w, caf::infinite, run_atom::value, job, *checkpoint).then(take);
      else
        self->request(w, caf::infinite, run_atom::value, job).then(take);
    });
    run();
    anon_send_exit(w, caf::exit_reason::user_shutdown);
    run();
    return *result;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(worker_tests, fixture)

CAF_TEST(a worker trains its fold in slices and reports progress and the result) {
  test::temp_dir dir;
  auto job = tiny_job();
  job.out_dir = (dir / "job").string();
  worker_options o;
  o.slot = 3;
  o.batches_per_slice = 2;
  auto r = run_job(job, o);
  CAF_CHECK(r.ok());
  CAF_CHECK_EQUAL(r.code, error_code::none);
  CAF_CHECK_EQUAL(r.id, 7u);
  CAF_CHECK_EQUAL(r.slot, 3);
  CAF_CHECK_EQUAL(r.fold, 1);
  CAF_CHECK_EQUAL(r.epochs_done, 2);
  CAF_CHECK_EQUAL(r.epoch_val_accuracy.size(), 2u);
  CAF_CHECK(r.val_accuracy >= 0 && r.val_accuracy <= 1);
  CAF_CHECK_GREATER_OR_EQUAL(r.finished_at, r.started_at);
  // 128 training samples (2 of 3 folds) = 4 batches per epoch, 2 per slice: 4 slices.
  CAF_CHECK_EQUAL(progress.size(), 4u);
  CAF_CHECK_EQUAL(progress.back().epoch, 2);
  CAF_CHECK_EQUAL(progress.back().batch, 4);
  for (const char* f : {"steps.csv", "epochs.csv", "confusion.csv", "metrics.json"})
    CAF_CHECK(std::filesystem::exists(dir / "job" / f));
}

CAF_TEST(a worker gives the same validation accuracy as the job run directly) {
  auto job = tiny_job();
  auto r = run_job(job);
  auto data = training::shared_dataset(job.dataset);
  auto fold = training::make_fold(data.train->size(), job.folds, job.fold, job.split_seed);
  training::job_options o;
  o.model = job.model;
  o.schedule = training::schedule_options::parse(job.scheduler);
  o.epochs = job.epochs;
  o.seed = job.seed;
  o.train_transform = training::default_transform(job.dataset, true);
  o.eval_transform = training::default_transform(job.dataset, false);
  training::training_job direct{o, data.train, fold.train, fold.validation};
  direct.run_to_end();
  CAF_CHECK_EQUAL(r.val_accuracy, direct.last_validation()->accuracy);
  CAF_CHECK_EQUAL(r.train_loss, direct.epoch_records().back().train_loss);
}

CAF_TEST(bad input and LibTorch errors become failed results and the worker lives on) {
  auto job = tiny_job();
  job.dataset = "no-such-dataset";
  auto r = run_job(job);
  CAF_CHECK(!r.ok());
  CAF_CHECK_EQUAL(r.code, error_code::invalid_argument);
  CAF_CHECK(test::contains(r.error, "no-such-dataset"));
  job = tiny_job();
  worker_options bad_shape;
  bad_shape.customize = [](const job_spec&, training::job_options& opts) {
    // Labels of the wrong shape: LibTorch throws a c10::Error with a backtrace.
    opts.criterion = [](const torch::Tensor& logits, const torch::Tensor& labels) {
      return torch::nn::functional::cross_entropy(logits, labels.view({-1, 1}).to(torch::kFloat));
    };
  };
  r = run_job(job, bad_shape);
  CAF_CHECK(!r.ok());
  CAF_CHECK_EQUAL(r.code, error_code::run_failed);
  CAF_CHECK(!r.error.empty());
  CAF_CHECK(r.error.find('\n') == std::string::npos);
  job = tiny_job();
  worker_options o;
  o.customize = [](const job_spec&, training::job_options& opts) {
    opts.criterion = [](const torch::Tensor& logits, const torch::Tensor& labels) {
      return torch::nn::functional::cross_entropy(logits, labels) * std::nan("");
    };
  };
  r = run_job(job, o);
  CAF_CHECK(!r.ok());
  CAF_CHECK(test::contains(r.error, "diverged"));
}

CAF_TEST(a thread change is applied and recorded) {
  auto job = tiny_job();
  auto w = spawn_worker(sys, sink, {});
  auto result = std::make_shared<job_result>();
  sys.spawn([=](caf::event_based_actor* self) {
    self->request(w, caf::infinite, run_atom::value, job).then([result](job_result& r) {
      *result = std::move(r);
    });
  });
  // Deliver the run request and one slice, then change threads.
  sched.run_once();
  sched.run_once();
  caf::anon_send(w, threads_atom::value, int32_t{2});
  run();
  CAF_CHECK(result->ok());
  CAF_REQUIRE_EQUAL(result->thread_counts.size(), 2u);
  CAF_CHECK_EQUAL(result->thread_counts[0], 1);
  CAF_CHECK_EQUAL(result->thread_counts[1], 2);
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(serve limits cap threads and refuse big checkpoints and foreign folders) {
  test::temp_dir dir;
  worker_options o;
  o.remote = true;
  o.limits.max_threads = 1;
  o.limits.max_checkpoint_bytes = 1000;
  o.limits.restrict_data_dirs = true;
  o.limits.data_dirs = {(dir / "allowed").string()};
  std::filesystem::create_directories(dir / "allowed" / "mnist");
  // Threads: a coordinator asking for 64 gets the cap.
  auto job = tiny_job();
  job.epochs = 1;
  job.threads = 64;
  auto r = run_job(job, o);
  CAF_CHECK(r.ok());
  CAF_REQUIRE(!r.thread_counts.empty());
  CAF_CHECK_EQUAL(r.thread_counts.front(), 1);
  // A checkpoint over the limit is refused before anything reads it.
  job_checkpoint big;
  big.id = job.id;
  big.bytes.assign(1001, 'x');
  r = run_job(job, o, big);
  CAF_CHECK(!r.ok());
  CAF_CHECK(test::contains(r.error, "--max-checkpoint-mb"));
  // Data folders: inside an allowed one is fine (the synthetic set reads nothing),
  // anywhere else (a way out included) fails naming the flags.
  job.data_dir = (dir / "allowed" / "mnist").string();
  CAF_CHECK(run_job(job, o).ok());
  for (const auto& bad : {(dir / "other").string(), (dir / "allowed" / ".." / "x").string(),
                          std::string{"/etc"}}) {
    job.data_dir = bad;
    r = run_job(job, o);
    CAF_CHECK(!r.ok());
    CAF_CHECK(test::contains(r.error, "--allow-data-dir"));
  }
  // A node's own --data-dir replaces whatever the coordinator named.
  o.data_dir = (dir / "allowed").string();
  job.data_dir = "/etc";
  CAF_CHECK(run_job(job, o).ok());
}

CAF_TEST(an interrupted job saves mid - epoch and its resumed run ends as if never interrupted) {
  test::temp_dir dir;
  auto job = tiny_job(); // 128 training samples: 4 batches an epoch
  job.epochs = 3;
  worker_options o;
  o.batches_per_slice = 1;
  job.out_dir = (dir / "straight").string();
  auto straight = run_job(job, o);
  CAF_REQUIRE(straight.ok());
  job.out_dir = (dir / "cut").string();
  auto w = spawn_worker(sys, sink, o);
  auto result = std::make_shared<job_result>();
  sys.spawn([=](caf::event_based_actor* client) {
    client->request(w, caf::infinite, run_atom::value, job).then([result](job_result& r) {
      *result = std::move(r);
    });
  });
  for (int i = 0; i < 7; ++i) // the request and a few one-batch slices
    sched.run_once();
  self->send(w, interrupt_atom::value);
  run();
  CAF_CHECK_EQUAL(result->code, error_code::interrupted);
  CAF_MESSAGE(result->error);
  CAF_REQUIRE(std::filesystem::exists(dir / "cut" / "latest.pt"));
  CAF_CHECK(!std::filesystem::exists(dir / "cut" / "epoch_1.pt")); // no epoch's end
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
  job.resume = true;
  auto resumed = run_job(job, o);
  CAF_REQUIRE(resumed.ok());
  CAF_CHECK_GREATER(resumed.resumed_from_step, 0);
  CAF_CHECK(resumed.epoch_train_loss == straight.epoch_train_loss);
  CAF_CHECK(resumed.epoch_val_loss == straight.epoch_val_loss);
  CAF_CHECK_EQUAL(resumed.val_accuracy, straight.val_accuracy);
}

CAF_TEST(a checkpoint the sink refused makes the next one carry every step) {
  test::temp_dir dir;
  worker_options o;
  o.remote = true;
  o.batches_per_slice = 1;
  auto job = tiny_job(); // 4 batches an epoch
  job.epochs = 3;
  job.checkpoint_every = 1;
  job.out_dir = (dir / "fold1").string();
  events->refuse_checkpoints = 1;
  // The sink answers each checkpoint before the worker's next slice.
  auto w = spawn_worker(sys, sink, o);
  auto result = std::make_shared<job_result>();
  sys.spawn([=](caf::event_based_actor* client) {
    client->request(w, caf::infinite, run_atom::value, job).then([result](job_result& r) {
      *result = std::move(r);
    });
  });
  while (!sched.jobs.empty()) {
    sched.prioritize(sink);
    sched.run_once();
  }
  CAF_REQUIRE(result->ok());
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
  const auto& sent = events->checkpoints;
  CAF_REQUIRE_EQUAL(sent.size(), 3u);
  auto records = [](const job_checkpoint& c) {
    return c.steps.size() / training::step_record_bytes;
  };
  CAF_CHECK_EQUAL(sent[0].steps_from, 0);
  CAF_CHECK_EQUAL(records(sent[0]), 4u);
  // The first never reached a steps file: the second starts from 0 again.
  CAF_CHECK_EQUAL(sent[1].steps_from, 0);
  CAF_CHECK_EQUAL(records(sent[1]), 8u);
  // Taken: the third carries only its own epoch.
  CAF_CHECK_EQUAL(sent[2].steps_from, 8);
  CAF_CHECK_EQUAL(records(sent[2]), 4u);
}

CAF_TEST(a node spawns no more workers than its cap over all coordinators) {
  node_options o;
  o.slots = 2;
  o.max_workers = 3;
  auto node = spawn_node(sys, o);
  run();
  auto ask = [&] {
    auto out = std::make_shared<std::pair<size_t, std::string>>(0, "");
    sys.spawn([=](caf::event_based_actor* self) {
      self->request(node, caf::infinite, spawn_atom::value, sink)
        .then([=](std::vector<worker_actor>& ws) { out->first = ws.size(); },
              [=](caf::error& e) { out->second = self->system().render(e); });
    });
    run();
    return *out;
  };
  CAF_CHECK_EQUAL(ask().first, 2u);
  auto refused = ask(); // 2 + 2 > 3
  CAF_CHECK_EQUAL(refused.first, 0u);
  CAF_CHECK(test::contains(refused.second, "--max-workers"));
  anon_send_exit(node, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST_FIXTURE_SCOPE_END()
