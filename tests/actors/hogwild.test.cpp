#include <torch/torch.h>

#define CAF_SUITE actors.hogwild
#include <caf/test/dsl.hpp>

#include "test_util.hpp"

#include <pnn/experiments/distributed.hpp>
#include <pnn/experiments/hogwild.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <set>
#include <sstream>

using namespace pnn;
using namespace pnn::training;

namespace {

const char* separable = "synthetic:train=512,test=256,noise=60";

hogwild_options small_run(const std::filesystem::path& out, int workers) {
  hogwild_options o;
  o.dataset = "synthetic:train=256,test=64";
  o.model = "lenet5";
  o.workers = workers;
  o.optimizer = "sgd:momentum=0.9";
  o.lr = 0.01;
  o.scheduler = "cosine";
  o.epochs = 2;
  o.batch_size = 32;
  o.out = out;
  o.progress = "none";
  return o;
}

/// A model whose prediction is known: class 1 when the image's mean is above 0
/// (after normalisation), class 0 otherwise.
struct sign_net : models::Network {
  sign_net() {
    scale = register_parameter("scale", torch::ones({1}));
  }
  torch::Tensor forward(torch::Tensor x) override {
    auto m = x.mean({1, 2, 3}) * scale;
    return torch::stack({-m, m}, 1);
  }
  torch::Tensor scale;
};

std::vector<int64_t> csv_row_numbers(const std::string& line) {
  std::vector<int64_t> out;
  std::stringstream in(line);
  std::string cell;
  std::getline(in, cell, ','); // class name
  while (std::getline(in, cell, ','))
    out.push_back(std::stoll(cell));
  return out;
}

} // namespace

CAF_TEST_FIXTURE_SCOPE(hogwild_actor_tests, test_coordinator_fixture<>)

CAF_TEST(two worker actors on one master see each update the other makes) {
  auto data = shared_dataset("synthetic:train=128,test=16");
  auto master = make_seeded_model("lenet5", 1, 10, 1);
  std::vector<std::shared_ptr<models::Network>> replicas(2);
  std::vector<worker_actor> workers;
  for (int i = 0; i < 2; ++i) {
    worker_options o;
    o.slot = i;
    o.batches_per_slice = 1;
    o.train_data = data.train;
    o.prepare = [&replicas, master, i](const job_spec&, training_job& job) {
      share_parameters(*master, *job.model());
      replicas[static_cast<size_t>(i)] = job.model();
    };
    workers.push_back(spawn_worker(sys, event_sink_actor{}, o));
  }
  std::vector<job_result> results(2);
  for (int i = 0; i < 2; ++i) {
    job_spec s;
    s.id = static_cast<uint32_t>(i);
    s.model = "lenet5";
    s.scheduler = "none";
    s.optimizer = "sgd";
    s.lr = 0.05;
    s.dataset = "synthetic";
    s.shards = 2;
    s.shard = i;
    s.seed = 10 + static_cast<uint64_t>(i);
    s.epochs = 1;
    s.batch_size = 16;
    auto w = workers[static_cast<size_t>(i)];
    sys.spawn([w, s, &results, i](caf::event_based_actor* self) {
      self->request(w, caf::infinite, run_atom::value, s).then([&results, i](job_result& r) {
        results[static_cast<size_t>(i)] = std::move(r);
      });
    });
  }
  // Both workers take their job (and share the master) before either trains.
  // Both workers take their job (and share the master) before either trains: once a
  // worker has its replica, its jobs (slices) wait until the other has one too.
  auto job_of = [](const worker_actor& w) {
    return dynamic_cast<caf::resumable*>(caf::actor_cast<caf::abstract_actor*>(w));
  };
  for (int guard = 0; guard < 100 && !(replicas[0] && replicas[1]); ++guard) {
    auto i = std::find_if(sched.jobs.begin(), sched.jobs.end(), [&](caf::resumable* j) {
      return !(replicas[0] && j == job_of(workers[0])) && !(replicas[1] && j == job_of(workers[1]));
    });
    CAF_REQUIRE(i != sched.jobs.end());
    std::rotate(sched.jobs.begin(), i, i + 1);
    sched.run_once();
  }
  CAF_REQUIRE(replicas[0] && replicas[1]);
  const auto n = master->parameters().size();
  for (size_t p = 0; p < n; ++p)
    CAF_CHECK_EQUAL(replicas[0]->parameters()[p].data_ptr(),
                    replicas[1]->parameters()[p].data_ptr());
  auto seen_by_1 = replicas[1]->parameters()[0].clone();
  // Runs the next message of worker `w` only (its next slice: one batch).
  auto run_worker_once = [&](const worker_actor& w) {
    auto i = std::find(sched.jobs.begin(), sched.jobs.end(), job_of(w));
    CAF_REQUIRE(i != sched.jobs.end());
    std::rotate(sched.jobs.begin(), i, i + 1);
    sched.run_once();
  };
  // One batch of worker 0 only.
  run_worker_once(workers[0]);
  CAF_CHECK(!torch::equal(replicas[1]->parameters()[0], seen_by_1));
  CAF_CHECK(torch::equal(replicas[1]->parameters()[0], master->parameters()[0]));
  // Gradients stay per worker: worker 1 has computed none yet.
  CAF_CHECK(replicas[0]->parameters()[0].grad().defined());
  CAF_CHECK(!replicas[1]->parameters()[0].grad().defined());
  // Now one batch of worker 1: its update lands on what worker 0 left.
  auto after_0 = master->parameters()[0].clone();
  run_worker_once(workers[1]);
  CAF_CHECK(!torch::equal(master->parameters()[0], after_0));
  CAF_CHECK(torch::equal(replicas[0]->parameters()[0], master->parameters()[0]));
  run();
  for (int i = 0; i < 2; ++i) {
    CAF_CHECK(results[static_cast<size_t>(i)].ok());
    CAF_CHECK_EQUAL(results[static_cast<size_t>(i)].epochs_done, 1);
    // No validation set in an SGD share.
    CAF_CHECK(std::isnan(results[static_cast<size_t>(i)].val_accuracy));
  }
  for (auto& w : workers)
    anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST(a shard outside the shard count fails the job with a clear error) {
  worker_options o;
  auto w = spawn_worker(sys, event_sink_actor{}, o);
  job_spec s;
  s.model = "lenet5";
  s.scheduler = "none";
  s.dataset = "synthetic:train=64,test=8";
  s.shards = 2;
  s.shard = 2;
  auto result = std::make_shared<job_result>();
  sys.spawn([=](caf::event_based_actor* self) {
    self->request(w, caf::infinite, run_atom::value, s).then([result](job_result& r) {
      *result = std::move(r);
    });
  });
  run();
  CAF_CHECK(!result->ok());
  CAF_CHECK_EQUAL(result->code, error_code::invalid_argument);
  CAF_CHECK(test::contains(result->error, "shard 2 outside 0..1"));
  anon_send_exit(w, caf::exit_reason::user_shutdown);
  run();
}

CAF_TEST_FIXTURE_SCOPE_END()

CAF_TEST(one worker reproduces plain SGD bit for bit) {
  test::temp_dir dir;
  auto o = small_run(dir.path(), 1);
  auto report = run_hogwild(o);

  auto data = shared_dataset(o.dataset);
  job_options j;
  j.model = o.model;
  j.optimizer = optimizer_options::parse(o.optimizer, o.lr);
  j.schedule = schedule_options::parse(o.scheduler);
  j.epochs = o.epochs;
  j.batch_size = o.batch_size;
  j.seed = o.seed;
  j.train_transform = default_transform(o.dataset, true);
  j.eval_transform = default_transform(o.dataset, false);
  training_job direct{j, data.train, all_indices(data.train->size()), {}};
  direct.run_to_end();

  CAF_REQUIRE_EQUAL(report.workers.size(), 1u);
  const auto& steps = report.workers[0].steps;
  CAF_REQUIRE_EQUAL(steps.size(), direct.step_records().size());
  for (size_t i = 0; i < steps.size(); ++i)
    CAF_CHECK_EQUAL(steps[i].loss, direct.step_records()[i].loss);
  auto a = report.model->parameters();
  auto b = direct.model()->parameters();
  CAF_REQUIRE_EQUAL(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    CAF_CHECK(torch::equal(a[i], b[i]));
  auto test = direct.evaluate(*data.test, all_indices(data.test->size()));
  CAF_CHECK_EQUAL(report.test_accuracy, test.accuracy);
}

CAF_TEST(two workers train a separable set to at least 95 percent through the C++ API) {
  test::temp_dir dir;
  auto data = shared_dataset(separable);
  auto model = models::make_model("lenet5", 1, 10);
  auto before = model->parameters()[0].clone();
  DistributedTrainer trainer(2, cross_entropy(), dir.path(), 32);
  trainer.options().progress = "none";
  auto get_optimizer = [](std::vector<torch::Tensor> params) {
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(1e-3));
  };
  auto report = trainer(model, data.train, get_optimizer, "multistep:milestones=2,unit=epoch", 3);
  // The given model was trained in place.
  CAF_CHECK(!torch::equal(model->parameters()[0], before));
  CAF_CHECK_EQUAL(report.model.get(), model.get());
  CAF_REQUIRE_EQUAL(report.workers.size(), 2u);
  // Dynamic balance: the workers split every epoch's 16 batches between them.
  CAF_CHECK_EQUAL(report.workers[0].samples + report.workers[1].samples, 512 * 3);
  CAF_CHECK_EQUAL(report.workers[0].steps.size() + report.workers[1].steps.size(), 16u * 3u);
  for (const auto& w : report.workers)
    CAF_CHECK_GREATER(w.samples, 0);
  DistributedTester tester(data.test, dir.path(), 100);
  auto e = tester(*model);
  CAF_MESSAGE("two-worker HOGWILD test accuracy " << e.accuracy);
  CAF_CHECK_GREATER_OR_EQUAL(e.accuracy, 0.95);
  int64_t total = 0;
  for (const auto& row : e.confusion)
    for (auto c : row)
      total += c;
  CAF_CHECK_EQUAL(total, data.test->size());
  auto stored = nlohmann::json::parse(test::read_text(dir / "test.json"));
  CAF_CHECK_EQUAL(stored["accuracy"].get<double>(), e.accuracy);
  CAF_CHECK(std::filesystem::exists(dir / "confusion.csv"));
}

CAF_TEST(the tester counts a hand checked confusion matrix) {
  test::temp_dir dir;
  auto d = std::make_shared<dataset>();
  d->name = "tiny";
  // Five 4x4 images, dark (0) or bright (255); labels 0 0 0 1 1.
  d->images = torch::zeros({5, 1, 4, 4}, torch::kUInt8);
  d->images[2].fill_(255);
  d->images[3].fill_(255);
  d->labels = torch::tensor({0, 0, 0, 1, 1}, torch::kInt64);
  d->classes = {"dark", "bright"};
  sign_net net;
  DistributedTester tester(d, dir.path(), 2);
  auto e = tester(net);
  // Predictions: dark -> 0, bright -> 1, so 0 0 1 1 0 against 0 0 0 1 1.
  CAF_REQUIRE_EQUAL(e.confusion.size(), 2u);
  CAF_CHECK_EQUAL(e.confusion[0][0], 2);
  CAF_CHECK_EQUAL(e.confusion[0][1], 1);
  CAF_CHECK_EQUAL(e.confusion[1][0], 1);
  CAF_CHECK_EQUAL(e.confusion[1][1], 1);
  CAF_CHECK_EQUAL(e.samples, 5);
  CAF_CHECK_EQUAL(e.accuracy, 3.0 / 5.0);
  std::stringstream csv(test::read_text(dir / "confusion.csv"));
  std::string line;
  std::getline(csv, line);
  CAF_CHECK_EQUAL(line, "true\\predicted,\"dark\",\"bright\"");
  std::getline(csv, line);
  CAF_CHECK(csv_row_numbers(line) == (std::vector<int64_t>{2, 1}));
  std::getline(csv, line);
  CAF_CHECK(csv_row_numbers(line) == (std::vector<int64_t>{1, 1}));
}

CAF_TEST(a run writes its loss curves and the summary the contract names) {
  test::temp_dir dir;
  auto o = small_run(dir.path(), 2);
  o.loss_window = 4;
  auto report = run_hogwild(o);
  auto summary = nlohmann::json::parse(test::read_text(dir / "summary.json"));
  for (const char* key :
       {"wall_seconds", "cpu_utilization_mean", "test_accuracy", "samples_per_second"})
    CAF_CHECK(summary.contains(key));
  CAF_CHECK_EQUAL(summary["workers"].get<int>(), 2);
  CAF_CHECK_EQUAL(summary["command"].get<std::string>(), "hogwild");
  CAF_CHECK_GREATER(summary["samples_per_second"].get<double>(), 0);
  CAF_CHECK_EQUAL(summary["test_accuracy"].get<double>(), report.test_accuracy);
  // Every step of both workers in loss.csv, in time order, with the moving average.
  size_t steps = report.workers[0].steps.size() + report.workers[1].steps.size();
  CAF_CHECK_EQUAL(steps, 2u * 4u * 2u); // 128 samples per shard: 4 batches x 2 epochs
  std::stringstream csv(test::read_text(dir / "loss.csv"));
  std::string line;
  std::getline(csv, line);
  CAF_CHECK_EQUAL(line, "time,worker,step,loss,loss_smoothed");
  size_t rows = 0;
  double last_time = -1;
  std::set<int> seen_workers;
  std::vector<double> losses;
  while (std::getline(csv, line)) {
    ++rows;
    std::stringstream row(line);
    std::string t, w, s, l, m;
    std::getline(row, t, ',');
    std::getline(row, w, ',');
    std::getline(row, s, ',');
    std::getline(row, l, ',');
    std::getline(row, m, ',');
    CAF_CHECK_GREATER_OR_EQUAL(std::stod(t), last_time);
    last_time = std::stod(t);
    seen_workers.insert(std::stoi(w));
    losses.push_back(std::stod(l));
    double mean = 0;
    size_t k = std::min<size_t>(4, losses.size());
    for (size_t i = losses.size() - k; i < losses.size(); ++i)
      mean += losses[i] / static_cast<double>(k);
    CAF_CHECK_LESS(std::abs(std::stod(m) - mean), 1e-5 * std::max(1.0, mean));
  }
  CAF_CHECK_EQUAL(rows, steps);
  CAF_CHECK_EQUAL(seen_workers.size(), 2u);
  for (const char* f : {"loss_worker0.csv", "loss_worker1.csv", "confusion.csv", "test.json",
                        "model.pt", "cpu.csv", "summary.md", "workers/worker1/steps.csv"})
    CAF_CHECK(std::filesystem::exists(dir / f));
}

CAF_TEST(the merged loss curve interleaves workers by time and time to loss reads it) {
  // Two workers' steps, known by hand: merged by time 4, 3, 2, 1; a moving mean
  // over 2 steps gives 4, 3.5, 2.5, 1.5.
  hogwild_report report;
  report.workers.resize(2);
  auto step = [](double time, int64_t n, double loss) {
    training::step_record r;
    r.time = time;
    r.step = n;
    r.loss = loss;
    return r;
  };
  report.workers[0].steps = {step(1, 1, 4), step(3, 2, 2)};
  report.workers[1].steps = {step(2, 1, 3), step(4, 2, 1)};
  auto curve = merged_loss_curve(report, 2);
  CAF_REQUIRE_EQUAL(curve.size(), 4u);
  std::vector<int32_t> workers;
  std::vector<double> smoothed;
  for (const auto& p : curve) {
    workers.push_back(p.worker);
    smoothed.push_back(p.smoothed);
  }
  CAF_CHECK((workers == std::vector<int32_t>{0, 1, 0, 1}));
  CAF_CHECK((smoothed == std::vector<double>{4, 3.5, 2.5, 1.5}));
  CAF_CHECK_EQUAL(time_to_loss(report, 3.5, 2), 2.0);  // reached on the second step
  CAF_CHECK_EQUAL(time_to_loss(report, 3.0, 2), 3.0);  // 3.5 is not yet 3
  CAF_CHECK_EQUAL(time_to_loss(report, 1.5, 2), 4.0);  // the last step
  CAF_CHECK(std::isnan(time_to_loss(report, 1.4, 2))); // never
  CAF_CHECK_EQUAL(time_to_loss(report, 3.0, 1), 2.0);  // no smoothing: worker 1's 3
}

CAF_TEST(static balance trains each worker on its own fixed shard) {
  test::temp_dir dir;
  auto o = small_run(dir.path(), 2);
  o.balance = "static";
  auto report = run_hogwild(o);
  for (const auto& w : report.workers) {
    CAF_CHECK_EQUAL(w.samples, 128 * 2);
    CAF_CHECK_EQUAL(w.steps.size(), 4u * 2u);
  }
  auto summary = nlohmann::json::parse(test::read_text(dir / "summary.json"));
  CAF_CHECK_EQUAL(summary["balance"].get<std::string>(), "static");
}

CAF_TEST(bad options and a failing worker are clear errors) {
  test::temp_dir dir;
  auto o = small_run(dir.path(), 2);
  o.workers = -1;
  auto e = test::error_of([&] { run_hogwild(o); });
  CAF_CHECK(e.first == error_code::invalid_argument);
  CAF_CHECK(test::contains(e.second, "--workers -1"));

  o = small_run(dir.path(), 2);
  o.balance = "random";
  e = test::error_of([&] { run_hogwild(o); });
  CAF_CHECK(test::contains(e.second, "--balance random"));

  o = small_run(dir.path(), 2);
  o.initial_model = std::make_shared<sign_net>();
  e = test::error_of([&] { run_hogwild(o); });
  CAF_CHECK(e.first == error_code::invalid_argument);
  CAF_CHECK(test::contains(e.second, "register_model"));

  o = small_run(dir.path(), 300);
  e = test::error_of([&] { run_hogwild(o); });
  CAF_CHECK(e.first == error_code::invalid_argument);
  CAF_CHECK(test::contains(e.second, "more workers than the 256 training samples"));

  o = small_run(dir.path(), 2);
  o.optimizer = "sgd";
  o.lr = 1e12; // diverges at once
  e = test::error_of([&] { run_hogwild(o); });
  CAF_CHECK(e.first == error_code::run_failed);
  CAF_CHECK(test::contains(e.second, "diverged"));
  CAF_MESSAGE(e.second);
}
