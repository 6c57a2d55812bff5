#include <torch/torch.h>

#define CAF_SUITE training.hogwild
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>

#include <map>
#include <set>
#include <thread>

using namespace pnn;
using namespace pnn::training;

namespace {

job_options sgd_options(uint64_t seed) {
  job_options o;
  o.model = "lenet5";
  o.optimizer = optimizer_options::parse("sgd:momentum=0.9", 0.01);
  o.schedule = schedule_options::parse("none");
  o.epochs = 2;
  o.batch_size = 16;
  o.seed = seed;
  return o;
}

std::vector<double> losses(const training_job& job) {
  std::vector<double> result;
  for (const auto& s : job.step_records())
    result.push_back(s.loss);
  return result;
}

} // namespace

CAF_TEST(an update by one replica is seen by the master and every other replica) {
  auto master = models::make_model("lenet5", 1, 10);
  auto a = models::make_model("lenet5", 1, 10);
  auto b = models::make_model("lenet5", 1, 10);
  share_parameters(*master, *a);
  share_parameters(*master, *b);
  for (size_t i = 0; i < master->parameters().size(); ++i) {
    CAF_CHECK_EQUAL(a->parameters()[i].data_ptr(), master->parameters()[i].data_ptr());
    CAF_CHECK_EQUAL(b->parameters()[i].data_ptr(), master->parameters()[i].data_ptr());
  }
  // Running statistics are shared as well.
  CAF_CHECK_EQUAL(a->buffers()[0].data_ptr(), master->buffers()[0].data_ptr());
  auto before = b->parameters()[0].clone();
  torch::optim::SGD opt{a->parameters(), torch::optim::SGDOptions(0.1)};
  opt.zero_grad();
  a->forward(torch::randn({4, 1, 32, 32})).sum().backward();
  opt.step();
  CAF_CHECK(!torch::equal(b->parameters()[0], before));
  CAF_CHECK(torch::equal(b->parameters()[0], a->parameters()[0]));
  // Gradients stay per replica.
  CAF_CHECK(a->parameters()[0].grad().defined());
  CAF_CHECK(!b->parameters()[0].grad().defined());
}

CAF_TEST(sharing between different architectures is refused) {
  auto master = models::make_model("lenet5", 1, 10);
  auto other = models::make_model("lenet", 1, 10);
  auto [code, msg] = test::error_of([&] { share_parameters(*master, *other); });
  CAF_CHECK(code == error_code::invalid_argument);
  auto wide = models::make_model("lenet5", 1, 7);
  auto [code2, msg2] = test::error_of([&] { share_parameters(*master, *wide); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "fc3"));
}

CAF_TEST(shards are disjoint and cover every sample with sizes within one) {
  std::set<int64_t> all;
  size_t smallest = 1000, largest = 0;
  for (int r = 0; r < 3; ++r) {
    auto s = shard_indices(20, 3, r, 5);
    CAF_CHECK(s == shard_indices(20, 3, r, 5));
    all.insert(s.begin(), s.end());
    smallest = std::min(smallest, s.size());
    largest = std::max(largest, s.size());
  }
  CAF_CHECK_EQUAL(all.size(), 20u);
  CAF_CHECK_LESS_OR_EQUAL(largest - smallest, 1u);
  auto [code, msg] = test::error_of([] { shard_indices(10, 2, 2, 0); });
  CAF_CHECK(code == error_code::invalid_argument);
}

CAF_TEST(one worker on shared parameters reproduces plain SGD exactly) {
  auto data = make_synthetic({});
  auto shard = shard_indices(data.train->size(), 1, 0, 3);
  training_job plain{sgd_options(3), data.train, shard, {}};
  plain.run_to_end();
  // The master is initialised from the same seed, so the shared run starts alike.
  auto master = make_seeded_model("lenet5", 1, 10, 3);
  training_job worker{sgd_options(3), data.train, shard, {}};
  share_parameters(*master, *worker.model());
  worker.run_to_end();
  CAF_CHECK(losses(plain) == losses(worker));
  for (size_t i = 0; i < master->parameters().size(); ++i)
    CAF_CHECK(torch::equal(master->parameters()[i], plain.model()->parameters()[i]));
}

CAF_TEST(two interleaved workers on disjoint shards learn separable data) {
  synthetic_options s;
  s.train_size = 1000;
  s.test_size = 300;
  s.noise = 80;
  auto data = make_synthetic(s);
  auto master = make_seeded_model("lenet5", 1, 10, 9);
  std::vector<std::unique_ptr<training_job>> workers;
  for (int r = 0; r < 2; ++r) {
    auto o = sgd_options(9 + static_cast<uint64_t>(r));
    o.epochs = 3;
    workers.push_back(std::make_unique<training_job>(
      o, data.train, shard_indices(data.train->size(), 2, r, 9), std::vector<int64_t>{}));
    share_parameters(*master, *workers.back()->model());
  }
  // Alternate single steps, as two cores updating the same weights would.
  bool done = false;
  while (!done) {
    done = true;
    for (auto& w : workers)
      done = w->run(1) && done;
  }
  auto e = evaluate(*master, *data.test, all_indices(data.test->size()),
                    default_transform("synthetic", false));
  CAF_MESSAGE("accuracy " << e.accuracy);
  CAF_CHECK_GREATER_OR_EQUAL(e.accuracy, 0.95);
}

CAF_TEST(a batch queue hands out every sample of an epoch exactly once) {
  batch_queue q{all_indices(70), 8, 3, 11};
  CAF_CHECK_EQUAL(q.batches_per_epoch(), 9);
  CAF_CHECK_EQUAL(q.size(), 70);
  std::vector<int64_t> batch;
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    std::multiset<int64_t> seen;
    int batches = 0;
    while (q.next(epoch, batch)) {
      CAF_CHECK_LESS_OR_EQUAL(batch.size(), 8u);
      seen.insert(batch.begin(), batch.end());
      ++batches;
    }
    CAF_CHECK_EQUAL(batches, 9);
    CAF_CHECK_EQUAL(seen.size(), 70u);
    CAF_CHECK_EQUAL(std::set<int64_t>(seen.begin(), seen.end()).size(), 70u);
    CAF_CHECK(!q.next(epoch, batch));
  }
  // Every epoch has its own order.
  batch_queue a{all_indices(70), 70, 1, 11};
  std::vector<int64_t> e0, e1;
  a.next(0, e0);
  a.next(1, e1);
  CAF_CHECK(e0 != e1);
  // An epoch two behind the newest is over once it is spent, and stays over.
  CAF_CHECK(a.next(2, batch));
  CAF_CHECK(!a.next(0, batch));
}

CAF_TEST(threads sharing a batch queue split each epoch between them) {
  auto q = std::make_shared<batch_queue>(all_indices(1000), 10, 2, 4);
  std::vector<std::vector<int64_t>> taken(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      std::vector<int64_t> batch;
      for (int64_t epoch = 0; epoch < 3; ++epoch)
        while (q->next(epoch, batch))
          taken[static_cast<size_t>(t)].insert(taken[static_cast<size_t>(t)].end(), batch.begin(),
                                               batch.end());
    });
  for (auto& t : threads)
    t.join();
  std::map<int64_t, int> count;
  for (const auto& v : taken)
    for (auto i : v)
      ++count[i];
  CAF_CHECK_EQUAL(count.size(), 1000u);
  bool three_each = true;
  for (const auto& [i, c] : count)
    three_each = three_each && c == 3;
  CAF_CHECK(three_each);
  CAF_CHECK_EQUAL(taken[0].size() + taken[1].size(), 3000u);
}

CAF_TEST(jobs on a shared queue together train each epoch once) {
  synthetic_options s;
  s.train_size = 200;
  s.test_size = 10;
  auto data = make_synthetic(s);
  auto queue = std::make_shared<batch_queue>(all_indices(200), 16, 2, 1);
  auto master = make_seeded_model("lenet5", 1, 10, 2);
  std::vector<std::unique_ptr<training_job>> jobs;
  for (int r = 0; r < 2; ++r) {
    auto o = sgd_options(2 + static_cast<uint64_t>(r));
    o.shared_batches = queue;
    jobs.push_back(
      std::make_unique<training_job>(o, data.train, all_indices(200), std::vector<int64_t>{}));
    share_parameters(*master, *jobs.back()->model());
    // 13 batches per epoch over 2 jobs: 7 each nominally.
    CAF_CHECK_EQUAL(jobs.back()->batches_per_epoch(), 7);
  }
  // Job 0 runs three batches for each one of job 1: it takes most of every epoch.
  bool done = false;
  while (!done) {
    done = jobs[0]->run(3);
    done = jobs[1]->run(1) && done;
  }
  for (int r = 0; r < 2; ++r)
    CAF_CHECK_EQUAL(jobs[static_cast<size_t>(r)]->epochs_done(), 2);
  CAF_CHECK_EQUAL(jobs[0]->samples_done() + jobs[1]->samples_done(), 2 * 200);
  CAF_CHECK_GREATER(jobs[0]->samples_done(), 2 * jobs[1]->samples_done());
  CAF_CHECK_EQUAL(jobs[0]->steps_done() + jobs[1]->steps_done(), 2 * 13);
}
