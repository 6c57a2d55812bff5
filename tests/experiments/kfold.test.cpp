#include <torch/torch.h>

#define CAF_SUITE experiments.kfold
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/experiments/async_kfold.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/tensorboard.hpp>

#include <algorithm>
#include <map>

#include <atomic>
#include <functional>

#include <set>

using namespace pnn;

namespace {

kfold_options small(const std::filesystem::path& out) {
  kfold_options o;
  // Noisy enough that folds and schedules reach different accuracies.
  o.dataset = "synthetic:train=240,test=10,noise=150";
  o.models = {"lenet5"};
  o.schedulers = {"cosine", "step"};
  o.folds = 3;
  o.epochs = 2;
  o.batch_size = 32;
  o.out = out;
  o.progress = "none";
  o.cores = 2;
  o.raise_threads_in_tail = false; // more threads change float sums: keep 1 everywhere
  return o;
}

} // namespace

CAF_TEST(the grid has one configuration per point in order with K jobs each) {
  kfold_options o;
  o.models = {"lenet", "lenet5"};
  o.schedulers = {"cosine"};
  o.optimizers = {"adam", "sgd:momentum=0.9"};
  o.lrs = {1e-3, 3e-2};
  o.folds = 3;
  o.out = "/o";
  auto configs = configurations(o);
  CAF_REQUIRE_EQUAL(configs.size(), 8u);
  CAF_CHECK_EQUAL(configs[0].name, "lenet/cosine/adam/lr=0.001");
  CAF_CHECK_EQUAL(configs[3].name, "lenet/cosine/sgd:momentum=0.9/lr=0.03");
  CAF_CHECK_EQUAL(configs[3].dir.generic_string(), "lenet/cosine/sgd_momentum_0.9/lr_0.03");
  CAF_CHECK_EQUAL(configs[4].model, "lenet5");
  CAF_CHECK_EQUAL(configs[7].batch_size, 32); // not a grid field here: the one value
  auto jobs = expand_jobs(o);
  CAF_REQUIRE_EQUAL(jobs.size(), 24u);
  for (const auto& j : jobs) {
    const auto& c = configs[j.id / 3];
    CAF_CHECK_EQUAL(j.fold, static_cast<int32_t>(j.id % 3));
    CAF_CHECK_EQUAL(j.model, c.model);
    CAF_CHECK_EQUAL(j.optimizer, c.optimizer);
    CAF_CHECK_EQUAL(j.lr, c.lr);
    CAF_CHECK_EQUAL(j.out_dir, (std::filesystem::path("/o") / c.dir / ("fold" + std::to_string(j.fold))).string());
  }
  // Without other grid fields the layout is model/scheduler/fold<k>, as always.
  o.optimizers = {"sgd"};
  o.lrs = {};
  configs = configurations(o);
  CAF_REQUIRE_EQUAL(configs.size(), 2u);
  CAF_CHECK_EQUAL(configs[1].name, "lenet5/cosine");
  CAF_CHECK_EQUAL(configs[1].optimizer, "sgd");
  jobs = expand_jobs(o);
  CAF_REQUIRE_EQUAL(jobs.size(), 6u);
  CAF_CHECK_EQUAL(jobs[5].out_dir, "/o/lenet5/cosine/fold2");
}

CAF_TEST(parallel and one - at - a - time runs give identical accuracy per job) {
  test::temp_dir dir;
  auto parallel = small(dir / "parallel");
  parallel.slots = 2;
  auto serial = small(dir / "serial");
  serial.serial = true;
  serial.threads_per_job = 1;
  auto p = run_kfold(parallel);
  auto s = run_kfold(serial);
  CAF_REQUIRE_EQUAL(p.jobs.size(), 6u);
  CAF_REQUIRE_EQUAL(s.jobs.size(), 6u);
  std::set<double> distinct;
  for (size_t i = 0; i < 6; ++i) {
    CAF_CHECK(p.jobs[i].ok());
    CAF_CHECK_EQUAL(p.jobs[i].id, s.jobs[i].id);
    CAF_CHECK_EQUAL(p.jobs[i].val_accuracy, s.jobs[i].val_accuracy);
    CAF_CHECK_EQUAL(p.jobs[i].val_loss, s.jobs[i].val_loss);
    distinct.insert(p.jobs[i].val_loss);
  }
  CAF_CHECK_GREATER(distinct.size(), 1u); // the comparison is not trivially equal
  // Both slots were used in parallel, one in serial mode.
  std::set<int32_t> slots;
  for (const auto& j : p.jobs)
    slots.insert(j.slot);
  CAF_CHECK_EQUAL(slots.size(), 2u);
  CAF_CHECK_EQUAL(s.summary["slots"].get<int>(), 1);
}

CAF_TEST(summary json lists every job exactly once with the contract keys) {
  test::temp_dir dir;
  auto o = small(dir / "run");
  auto r = run_kfold(o);
  auto summary = nlohmann::json::parse(test::read_text(dir / "run/summary.json"));
  CAF_CHECK(summary["wall_seconds"].get<double>() > 0);
  auto cpu = summary["cpu_utilization_mean"].get<double>();
  CAF_CHECK(cpu >= 0 && cpu <= 1);
  CAF_REQUIRE_EQUAL(summary["jobs"].size(), 6u);
  std::set<std::string> seen;
  for (const auto& j : summary["jobs"]) {
    for (const char* key : {"model", "scheduler", "fold", "host", "threads", "val_accuracy",
                            "started_at", "finished_at"})
      CAF_CHECK(j.contains(key));
    auto key = j["model"].get<std::string>() + "/" + j["scheduler"].get<std::string>() + "/"
      + std::to_string(j["fold"].get<int>());
    CAF_CHECK(seen.insert(key).second);
    CAF_CHECK_LESS_OR_EQUAL(j["started_at"].get<double>(), j["finished_at"].get<double>());
  }
  CAF_CHECK_EQUAL(seen.size(), 6u);
  for (const char* f : {"summary.md", "cpu.csv", "lenet5/cosine/time.json",
                        "lenet5/step/fold2/result.json", "lenet5/step/fold2/epochs.csv"})
    CAF_CHECK(std::filesystem::exists(dir / "run" / f));
  CAF_CHECK_EQUAL(r.table.size(), 2u);
  CAF_CHECK_EQUAL(r.table[0].folds_ok, 3);
}

CAF_TEST(tensorboard events of every job read back equal to summary json) {
  namespace tb = pnn::training::tensorboard;
  test::temp_dir dir;
  auto o = small(dir / "run");
  o.lrs = {1e-3, 3e-3};
  o.validate_every = 2; // epoch 1 not validated: no point in TensorBoard either
  o.epochs = 3;
  run_kfold(o);
  auto summary = nlohmann::json::parse(test::read_text(dir / "run/summary.json"));
  CAF_REQUIRE_EQUAL(summary["jobs"].size(), 12u);
  // The experiment at the root: the grid's values.
  std::vector<std::filesystem::path> roots;
  for (const auto& f : tb::event_files(dir / "run/tb"))
    if (f.parent_path() == dir / "run/tb")
      roots.push_back(f);
  CAF_REQUIRE_EQUAL(roots.size(), 1u);
  auto root = tb::read_events(roots.front());
  CAF_REQUIRE_EQUAL(root.size(), 2u);
  auto experiment = nlohmann::json::parse(root[1].values.at(0).plugin_json)["experiment"];
  CAF_CHECK_EQUAL(experiment["hparam_infos"][1]["domain_discrete"],
                  nlohmann::json::parse(R"(["cosine","step"])"));
  CAF_CHECK_EQUAL(experiment["hparam_infos"][3]["domain_discrete"],
                  nlohmann::json::parse("[0.001,0.003]"));
  CAF_CHECK_EQUAL(experiment["hparam_infos"].size(), 5u);
  size_t files = 0;
  for (const auto& job : summary["jobs"]) {
    const auto run = dir / "run/tb" / job["dir"].get<std::string>();
    auto found = tb::event_files(run);
    CAF_REQUIRE_EQUAL(found.size(), 1u);
    ++files;
    auto events = tb::read_events(found[0]); // every frame's CRCs and Event checked
    std::map<std::string, std::vector<std::pair<int64_t, double>>> scalars;
    nlohmann::json start;
    std::string end;
    for (const auto& e : events)
      for (const auto& v : e.values) {
        if (v.has_simple)
          scalars[v.tag].emplace_back(e.step, v.simple);
        else if (v.tag == "_hparams_/session_start_info")
          start = nlohmann::json::parse(v.plugin_json)["session_start_info"];
        else if (v.tag == "_hparams_/session_end_info")
          end = nlohmann::json::parse(v.plugin_json)["session_end_info"]["status"];
      }
    CAF_CHECK_EQUAL(start["group_name"], job["config"]);
    CAF_CHECK_EQUAL(start["hparams"]["model"], job["model"]);
    CAF_CHECK_EQUAL(start["hparams"]["scheduler"], job["scheduler"]);
    CAF_CHECK_EQUAL(run.filename().string(), "fold" + std::to_string(job["fold"].get<int>()));
    CAF_CHECK_EQUAL(start["hparams"]["lr"].get<double>(), job["lr"].get<double>());
    CAF_CHECK_EQUAL(end, "STATUS_SUCCESS");
    // Validation per epoch, as summary.json has it (float32 in the file).
    std::vector<std::pair<int64_t, double>> expected;
    for (const auto& e : job["epochs"])
      if (!e["val_accuracy"].is_null())
        expected.emplace_back(e["epoch"].get<int64_t>(),
                              static_cast<float>(e["val_accuracy"].get<double>()));
    CAF_CHECK_EQUAL(expected.size(), 2u);
    CAF_CHECK_EQUAL(scalars["val/accuracy"], expected);
    CAF_CHECK_EQUAL(scalars["val/loss"].size(), 2u);
    CAF_CHECK_EQUAL(scalars["val/accuracy"].back().second,
                    static_cast<float>(job["val_accuracy"].get<double>()));
    // Every step of steps.csv (a header and a line per step).
    auto steps = test::read_text(dir / "run" / job["dir"].get<std::string>() / "steps.csv");
    const auto lines = static_cast<size_t>(std::count(steps.begin(), steps.end(), '\n'));
    CAF_CHECK_EQUAL(scalars["train/loss"].size(), lines - 1);
    CAF_CHECK_EQUAL(scalars["train/epoch_loss"].size(), 3u);
  }
  CAF_CHECK_EQUAL(files, 12u);
}

CAF_TEST(resume keeps finished jobs and runs only the missing ones) {
  test::temp_dir dir;
  auto o = small(dir / "run");
  auto first = run_kfold(o);
  std::filesystem::remove(dir / "run/lenet5/step/fold1/result.json");
  o.resume = true;
  auto second = run_kfold(o);
  CAF_REQUIRE_EQUAL(second.jobs.size(), 6u);
  int kept = 0;
  for (const auto& j : second.summary["jobs"])
    kept += j.value("kept_from_earlier_run", false) ? 1 : 0;
  CAF_CHECK_EQUAL(kept, 5);
  for (size_t i = 0; i < 6; ++i)
    CAF_CHECK_EQUAL(first.jobs[i].val_accuracy, second.jobs[i].val_accuracy);
  // Results of other settings are not kept as this run's: one clear error, and
  // nothing of the earlier run is touched.
  const auto before = test::read_text(dir / "run/lenet5/cosine/fold0/result.json");
  for (auto change : std::vector<std::function<void(kfold_options&)>>{
         [](kfold_options& x) { x.epochs = 3; }, [](kfold_options& x) { x.lr = 3e-3; },
         [](kfold_options& x) { x.seed = 2; },
         [](kfold_options& x) { x.dataset = "synthetic:train=200,test=10,noise=150"; }}) {
    auto other = o;
    change(other);
    try {
      run_kfold(other);
      CAF_FAIL("a resume with other settings ran");
    } catch (const pnn::error& e) {
      CAF_MESSAGE(e.what());
      CAF_CHECK(e.code() == error_code::invalid_argument);
      CAF_CHECK(test::contains(e.what(), "--resume: "));
      CAF_CHECK(test::contains(e.what(), "other settings"));
    }
  }
  CAF_CHECK_EQUAL(test::read_text(dir / "run/lenet5/cosine/fold0/result.json"), before);
}

CAF_TEST(bad options are errors before anything runs) {
  test::temp_dir dir;
  auto o = small(dir / "run");
  o.models = {"lenet5", "nonet"};
  auto [code, msg] = test::error_of([&] { run_kfold(o); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "nonet"));
  o = small(dir / "run");
  o.folds = 1;
  auto [code2, msg2] = test::error_of([&] { run_kfold(o); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "--folds 1"));
  CAF_CHECK(!std::filesystem::exists(dir / "run/summary.json"));
}

CAF_TEST(AsyncKFold takes model factories an optimizer factory and a criterion) {
  test::temp_dir dir;
  auto optimizers = std::make_shared<std::atomic<int>>(0);
  auto losses = std::make_shared<std::atomic<int>>(0);
  pnn::AsyncKFold kfold(
    2, "synthetic:train=96,test=10", dir / "run",
    [losses](const torch::Tensor& logits, const torch::Tensor& labels) {
      ++*losses;
      return torch::nn::functional::cross_entropy(logits, labels);
    },
    32, true);
  kfold.options().progress = "none";
  auto get_optimizer = [optimizers](std::vector<torch::Tensor> params) {
    ++*optimizers;
    return std::make_unique<torch::optim::SGD>(std::move(params), torch::optim::SGDOptions(0.05));
  };
  auto report = kfold.run_factories(
    {{"my-lenet5", [](int64_t in, int64_t k) { return models::make_model("lenet5", in, k); }}},
    {"none"}, get_optimizer, {1, 0, "none"});
  CAF_REQUIRE_EQUAL(report.jobs.size(), 2u);
  CAF_CHECK(report.jobs[0].ok() && report.jobs[1].ok());
  CAF_CHECK_EQUAL(report.jobs[0].model, "my-lenet5");
  CAF_CHECK_EQUAL(optimizers->load(), 2);
  CAF_CHECK_EQUAL(losses->load(), 2 * 2); // 48 training samples per fold = 2 batches each
  CAF_CHECK(std::filesystem::exists(dir / "run/my-lenet5/none/fold1/result.json"));
}
