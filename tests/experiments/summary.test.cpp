#include <torch/torch.h>

#define CAF_SUITE experiments.summary
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/experiments/hogwild.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/experiments/summary.hpp>
#include <pnn/files.hpp>

#include <cmath>

using namespace pnn;
using nlohmann::json;

CAF_TEST(a summary goes through the type and back to the same JSON) {
  // A K-fold summary as pnn writes it, a failed job (null figures) and keys the type
  // does not know among them.
  const auto written = json::parse(R"({
    "command": "kfold", "dataset": "synthetic", "wall_seconds": 12.5,
    "cpu_utilization_mean": 0.97, "cores": 2, "mode": "parallel", "slots": 2,
    "hosts": [], "jobs_failed": 1, "some_future_key": {"a": [1, 2]},
    "table": [{"model": "lenet5", "scheduler": "cosine", "val_accuracy_mean": 0.5,
               "val_accuracy_std": 0.25, "folds_ok": 1}],
    "jobs": [{"id": 0, "model": "lenet5", "scheduler": "cosine", "fold": 0, "host": "local",
              "slot": 1, "ok": true, "error": "", "val_accuracy": 0.75, "val_loss": 0.5,
              "train_loss": 0.4, "started_at": 0.5, "finished_at": 6.25, "threads": 1},
             {"id": 1, "model": "lenet5", "scheduler": "cosine", "fold": 1, "host": "h:7000",
              "slot": 0, "ok": false, "error": "worker lost 3 times", "val_accuracy": null,
              "val_loss": null, "train_loss": null, "started_at": 0, "finished_at": 0}]})");
  auto s = run_summary::from_json(written, "summary.json");
  CAF_CHECK_EQUAL(s.command, "kfold");
  CAF_CHECK_EQUAL(*s.cores, 2);
  CAF_CHECK_EQUAL(*s.mode, "parallel");
  CAF_REQUIRE_EQUAL(s.table.size(), 1u);
  CAF_CHECK_EQUAL(s.table[0].val_accuracy_std, 0.25);
  CAF_REQUIRE_EQUAL(s.jobs.size(), 2u);
  CAF_CHECK_EQUAL(s.jobs[0].finished_at, 6.25);
  CAF_CHECK_EQUAL(s.jobs[0].more["threads"], 1);
  CAF_CHECK(std::isnan(s.jobs[1].val_accuracy));
  CAF_CHECK_EQUAL(s.jobs[1].host, "h:7000");
  CAF_CHECK_EQUAL(s.more["some_future_key"]["a"][1], 2);
  CAF_CHECK_EQUAL(s.to_json(), written);
  // Written before grids: the configuration is model/scheduler, in its folder.
  CAF_CHECK_EQUAL(s.table[0].config_name(), "lenet5/cosine");
  CAF_CHECK_EQUAL(s.jobs[1].folder(), "lenet5/cosine/fold1");
  // A grid's keys come back as written too.
  auto grid = written;
  grid["table"][0].update(json::parse(
    R"({"config": "lenet5/cosine/lr=0.01", "optimizer": "adam", "lr": 0.01, "batch_size": 32})"));
  grid["jobs"][1].update(
    json::parse(R"({"config": "lenet5/cosine/lr=0.01", "dir": "lenet5/cosine/lr_0.01/fold1"})"));
  auto g = run_summary::from_json(grid, "summary.json");
  CAF_CHECK_EQUAL(g.table[0].config_name(), "lenet5/cosine/lr=0.01");
  CAF_CHECK_EQUAL(*g.table[0].lr, 0.01);
  CAF_CHECK_EQUAL(g.jobs[1].folder(), "lenet5/cosine/lr_0.01/fold1");
  CAF_CHECK_EQUAL(g.to_json(), grid);
}

CAF_TEST(a key of the wrong type is refused naming the file and the key) {
  auto [code, msg] = test::error_of([] {
    run_summary::from_json(json::parse(R"({"command": "kfold", "cores": "two"})"),
                           "x/summary.json");
  });
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "x/summary.json"));
  CAF_CHECK(test::contains(msg, "\"cores\""));
  std::tie(code, msg) = test::error_of(
    [] { run_summary::from_json(json::parse(R"({"dataset": "synthetic"})"), "y/summary.json"); });
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "no \"command\" key"));
}

CAF_TEST(what kfold and hogwild write reads back through the type unchanged) {
  test::temp_dir dir;
  kfold_options k;
  k.dataset = "synthetic:train=96,test=10";
  k.models = {"lenet5"};
  k.schedulers = {"none"};
  k.folds = 2;
  k.out = dir / "kfold";
  k.progress = "none";
  k.cores = 2;
  auto kr = run_kfold(k);
  auto ks = run_summary::read(k.out);
  CAF_CHECK_EQUAL(ks.to_json(), json::parse(read_text_file(k.out / "summary.json")));
  CAF_REQUIRE_EQUAL(ks.jobs.size(), kr.jobs.size());
  for (size_t i = 0; i < ks.jobs.size(); ++i)
    CAF_CHECK_EQUAL(ks.jobs[i].val_accuracy, kr.jobs[i].val_accuracy);
  CAF_CHECK_EQUAL(ks.table[0].val_accuracy_mean, kr.table[0].mean);

  hogwild_options h;
  h.dataset = "synthetic:train=96,test=20";
  h.workers = 2;
  h.out = dir / "hogwild";
  h.progress = "none";
  auto hr = run_hogwild(h);
  auto hs = run_summary::read(h.out);
  CAF_CHECK_EQUAL(hs.to_json(), json::parse(read_text_file(h.out / "summary.json")));
  CAF_CHECK_EQUAL(*hs.test_accuracy, hr.test_accuracy);
  CAF_CHECK_EQUAL(*hs.workers, 2);
  CAF_CHECK_EQUAL(*hs.worker_list_size, 2u);
  CAF_CHECK_EQUAL(hs.per_class_accuracy->size(), 10u);
}
