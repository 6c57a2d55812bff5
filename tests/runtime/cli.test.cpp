#include <torch/torch.h>

#define CAF_SUITE runtime.cli
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <sys/wait.h>

using namespace pnn;

namespace {

const std::string node = PNN_NODE_PATH;

test::process_result pnn_node(const std::string& args) {
  return test::run_command(node + " " + args);
}

/// One line on stderr, naming `part`, exit code 2.
void check_bad_input(const test::process_result& r, const std::string& part) {
  CAF_CHECK_EQUAL(r.exit_code, 2);
  CAF_CHECK(test::contains(r.err, part));
  CAF_CHECK_EQUAL(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  if (!test::contains(r.err, part))
    CAF_MESSAGE("stderr was: " << r.err);
}

const std::string tiny_base = "train --dataset synthetic --subset 256 --model lenet5 "
                              "--batch-size 32 --progress plain";
const std::string tiny_run = tiny_base + " --epochs 1";

} // namespace

CAF_TEST(train runs a job and writes the files of the output layout) {
  test::temp_dir dir;
  auto r = pnn_node(tiny_run + " --out " + (dir / "run").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "test accuracy:"));
  auto summary = nlohmann::json::parse(test::read_text(dir / "run/summary.json"));
  for (const char* key : {"wall_seconds", "cpu_utilization_mean", "test_accuracy"})
    CAF_CHECK(summary.contains(key));
  CAF_CHECK_GREATER(summary["wall_seconds"].get<double>(), 0.0);
  auto cpu = summary["cpu_utilization_mean"].get<double>();
  CAF_CHECK(cpu >= 0.0 && cpu <= 1.0);
  CAF_CHECK_EQUAL(summary["test_samples"].get<int64_t>(), 500);
  int64_t confusion_total = 0;
  for (const auto& row : summary["confusion"])
    for (const auto& v : row)
      confusion_total += v.get<int64_t>();
  CAF_CHECK_EQUAL(confusion_total, 500);
  for (const char* f : {"summary.md", "cpu.csv", "lenet5/cosine/time.json",
                        "lenet5/cosine/all/steps.csv", "lenet5/cosine/all/epochs.csv",
                        "lenet5/cosine/all/confusion.csv", "lenet5/cosine/all/metrics.json",
                        "lenet5/cosine/all/latest.pt", "lenet5/cosine/all/epoch_1.pt"})
    CAF_CHECK(std::filesystem::exists(dir / "run" / f));
  auto steps = test::read_text(dir / "run/lenet5/cosine/all/steps.csv");
  CAF_CHECK_EQUAL(std::count(steps.begin(), steps.end(), '\n'), 1 + 8);
  auto metrics = nlohmann::json::parse(test::read_text(dir / "run/lenet5/cosine/all/metrics.json"));
  CAF_CHECK_EQUAL(metrics["steps"].size(), 8u);
  CAF_CHECK_EQUAL(metrics["epochs"].size(), 1u);
  CAF_CHECK_EQUAL(metrics["test"]["samples"].get<int64_t>(), 500);
}

/// The loss column of a steps.csv (time differs between runs; losses must not).
std::vector<std::string> loss_column(const std::filesystem::path& steps_csv) {
  std::vector<std::string> losses;
  std::istringstream in{test::read_text(steps_csv)};
  std::string line;
  std::getline(in, line); // header: time,epoch,batch,step,loss,lr
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::istringstream row{line};
    for (std::string c; std::getline(row, c, ',');)
      cells.push_back(c);
    if (cells.size() >= 5)
      losses.push_back(cells[4]);
  }
  return losses;
}

CAF_TEST(a model trained by pnn opens in PyTorch and reaches the same test accuracy) {
  // scripts/pnn_model.py: pnn's networks in PyTorch, the job's checkpoint loaded with
  // torch.jit.load, the test set read and transformed in Python.
  test::temp_dir dir;
  auto r = pnn_node("train --dataset fashion-mnist --subset 2000 --model lenet5 --epochs 1 "
                    "--progress none --out "
                    + (dir / "run").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto summary = nlohmann::json::parse(test::read_text(dir / "run/summary.json"));
  const double pnn_accuracy = summary["test_accuracy"].get<double>();
  const std::string script = std::string{PNN_SOURCE_DIR} + "/scripts/pnn_model.py";
  auto py = test::run_command("/usr/bin/python3 " + script + " "
                              + (dir / "run/lenet5/cosine/all/epoch_1.pt").string()
                              + " --model lenet5 --dataset fashion-mnist");
  CAF_REQUIRE_EQUAL(py.exit_code, 0);
  auto python = nlohmann::json::parse(py.out);
  CAF_MESSAGE("test accuracy: pnn " << pnn_accuracy << ", PyTorch "
                                    << python["accuracy"].get<double>());
  CAF_CHECK_EQUAL(python["samples"].get<int>(), 10000);
  // The same network on the same images: at most one image apart (pnn folds batch
  // norm into the convolutions, which rounds differently).
  CAF_CHECK_LESS_OR_EQUAL(std::abs(python["accuracy"].get<double>() - pnn_accuracy), 1e-4 + 1e-9);
  CAF_CHECK_LESS_OR_EQUAL(
    std::abs(python["loss"].get<double>() - summary["test_loss"].get<double>()), 1e-3);
  // Another network's names are refused in one line naming the file.
  auto wrong = test::run_command("/usr/bin/python3 " + script + " "
                                 + (dir / "run/lenet5/cosine/all/epoch_1.pt").string()
                                 + " --model vgg11");
  CAF_CHECK_EQUAL(wrong.exit_code, 2);
  CAF_CHECK(test::contains(wrong.err, "epoch_1.pt: not a vgg11"));
}

CAF_TEST(resume continues from the latest checkpoint with the uninterrupted losses) {
  test::temp_dir dir;
  // One run of 2 epochs straight through, checkpointing each epoch.
  const auto flags = tiny_base + " --epochs 2 --checkpoint-every 1";
  CAF_REQUIRE_EQUAL(pnn_node(flags + " --out " + (dir / "full").string()).exit_code, 0);
  const auto full = dir / "full/lenet5/cosine/all";
  // Another that stopped after its first epoch: its folder holds epoch 1 only.
  const auto cut = dir / "cut/lenet5/cosine/all";
  std::filesystem::create_directories(cut);
  std::filesystem::copy_file(full / "epoch_1.pt", cut / "latest.pt");
  // Its steps file goes along (it holds both epochs' steps: the checkpoint takes
  // its own first ones).
  std::filesystem::copy_file(full / "steps.bin", cut / "steps.bin");
  auto r = pnn_node(flags + " --resume --out " + (dir / "cut").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "resuming from"));
  CAF_CHECK(test::contains(r.out, "epoch 1, batch 0 done"));
  // Every step's loss, epoch 1's restored and epoch 2's retrained, to the digit.
  auto a = loss_column(full / "steps.csv");
  auto b = loss_column(cut / "steps.csv");
  CAF_CHECK_EQUAL(a.size(), 16u);
  CAF_CHECK((a == b));
}

CAF_TEST(a config file supplies flags and the command line wins) {
  test::temp_dir dir;
  std::ofstream(dir / "run.cfg") << "# a comment\ndataset = synthetic\nsubset = 64\nmodel = "
                                    "lenet5\nepochs = 3\nprogress = none\n";
  auto r = pnn_node("train --config " + (dir / "run.cfg").string() + " --epochs 1 --out "
                    + (dir / "run").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto summary = nlohmann::json::parse(test::read_text(dir / "run/summary.json"));
  CAF_CHECK_EQUAL(summary["epochs"].get<int>(), 1);
  CAF_CHECK_EQUAL(summary["train_samples"].get<int>(), 64);
  std::ofstream(dir / "bad.cfg") << "modle = lenet5\n";
  check_bad_input(pnn_node("train --config " + (dir / "bad.cfg").string() + " --out x"), "bad.cfg");
  check_bad_input(pnn_node("train --config " + (dir / "none.cfg").string() + " --out x"),
                  "none.cfg");
}

CAF_TEST(bad flags give one line naming the flag and exit code 2) {
  test::temp_dir dir;
  auto out = " --out " + (dir / "x").string();
  check_bad_input(pnn_node("train --dataset synthetic --lr abc" + out), "--lr");
  check_bad_input(pnn_node("train --dataset synthetic --lr -1" + out), "--lr");
  check_bad_input(pnn_node("train --dataset synthetic --epochs 0" + out), "--epochs");
  check_bad_input(pnn_node("train --dataset synthetic --batch-size 0" + out), "--batch-size");
  check_bad_input(pnn_node("train --dataset synthetic --threads 0" + out), "--threads");
  check_bad_input(pnn_node("train --dataset synthetic --model resnet" + out), "resnet");
  check_bad_input(pnn_node("train --dataset synthetic --scheduler linear" + out), "--scheduler");
  check_bad_input(pnn_node("train --dataset synthetic --optimizer rmsprop" + out), "--optimizer");
  check_bad_input(pnn_node("train --dataset synthetic --subset 99999" + out), "--subset");
  check_bad_input(pnn_node("train --dataset imagenet" + out), "imagenet");
  check_bad_input(pnn_node("train --dataset mnist" + out), "--data-dir");
  check_bad_input(pnn_node("train --dataset synthetic --wat 1" + out), "--wat");
  check_bad_input(pnn_node("train --dataset synthetic"), "--out");
  check_bad_input(pnn_node("frobnicate"), "frobnicate");
}

CAF_TEST(a malformed dataset file gives one line naming the file and exit code 2) {
  test::temp_dir dir;
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    test::write_bytes(dir / f, {0, 0, 8, 3, 0, 0, 0});
  check_bad_input(pnn_node("train --dataset mnist --data-dir " + dir.path().string() + " --out "
                           + (dir / "x").string()),
                  "train-images-idx3-ubyte: truncated");
}

CAF_TEST(models and datasets list what exists) {
  auto m = pnn_node("models");
  CAF_CHECK_EQUAL(m.exit_code, 0);
  for (const char* name : {"lenet", "lenet5", "alexnet", "mobilenet", "vgg11", "vgg19"})
    CAF_CHECK(test::contains(m.out, name));
  auto d = pnn_node("datasets");
  CAF_CHECK_EQUAL(d.exit_code, 0);
  CAF_CHECK(test::contains(d.out, "fashion-mnist"));
  CAF_CHECK(test::contains(d.out, "cifar10"));
  auto h = pnn_node("train --help");
  CAF_CHECK_EQUAL(h.exit_code, 0);
  CAF_CHECK(test::contains(h.out, "--batch-size"));
}

CAF_TEST(kfold runs every job and prints the accuracy table) {
  test::temp_dir dir;
  auto r = pnn_node("kfold --dataset synthetic:train=120,test=10 --models lenet5 --schedulers "
                    "cosine,warm --folds 2 --epochs 1 --progress plain --out "
                    + (dir / "kf").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "lenet5 / cosine"));
  CAF_CHECK(test::contains(r.out, "lenet5 / warm"));
  CAF_CHECK(test::contains(r.out, "mean CPU utilisation"));
  auto summary = nlohmann::json::parse(test::read_text(dir / "kf/summary.json"));
  CAF_CHECK_EQUAL(summary["jobs"].size(), 4u);
  CAF_CHECK_EQUAL(summary["mode"].get<std::string>(), "parallel");
}

CAF_TEST(kfold validate every 0 validates each job after its last epoch only) {
  test::temp_dir dir;
  auto r = pnn_node("kfold --dataset synthetic:train=120,test=10 --models lenet5 --schedulers "
                    "cosine --folds 2 --epochs 2 --validate-every 0 --progress none --out "
                    + (dir / "kf").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto summary = nlohmann::json::parse(test::read_text(dir / "kf/summary.json"));
  CAF_CHECK_EQUAL(summary["validate_every"].get<int64_t>(), 0);
  CAF_REQUIRE_EQUAL(summary["jobs"].size(), 2u);
  for (const auto& job : summary["jobs"]) {
    CAF_REQUIRE_EQUAL(job["epochs"].size(), 2u);
    CAF_CHECK(job["epochs"][0]["val_accuracy"].is_null());
    CAF_CHECK(job["epochs"][1]["val_accuracy"].is_number());
    CAF_CHECK(job["val_accuracy"].is_number()); // the job's result: its last validation
  }
}

CAF_TEST(train validate every N evaluates the test set after every Nth epoch) {
  test::temp_dir dir;
  auto run = [&](const std::string& flags, const std::string& out) {
    auto r = pnn_node("train --dataset synthetic:train=96,test=40 --model lenet --epochs 2 "
                      "--progress none " + flags + " --out " + (dir / out).string());
    CAF_REQUIRE_EQUAL(r.exit_code, 0);
    return std::make_pair(r.out, nlohmann::json::parse(test::read_text(dir / out / "summary.json")));
  };
  auto [text, every] = run("--validate-every 1", "every");
  CAF_CHECK_EQUAL(every["validate_every"].get<int64_t>(), 1);
  CAF_REQUIRE_EQUAL(every["epoch_records"].size(), 2u);
  for (const auto& e : every["epoch_records"])
    CAF_CHECK(e["val_accuracy"].is_number());
  // The final test figures are the last epoch's evaluation of the test set.
  CAF_CHECK_EQUAL(every["test_accuracy"].get<double>(),
                  every["epoch_records"][1]["val_accuracy"].get<double>());
  CAF_CHECK(test::contains(text, "test accuracy"));
  auto [plain_text, plain] = run("", "plain");
  CAF_CHECK_EQUAL(plain["validate_every"].get<int64_t>(), 0);
  for (const auto& e : plain["epoch_records"])
    CAF_CHECK(e["val_accuracy"].is_null());
  // The same seed trains the same model either way: the same test accuracy.
  CAF_CHECK_EQUAL(plain["test_accuracy"].get<double>(), every["test_accuracy"].get<double>());
  auto out = " --out " + (dir / "bad").string();
  check_bad_input(pnn_node("train --dataset synthetic --validate-every -1" + out),
                  "--validate-every");
  check_bad_input(pnn_node("train --dataset synthetic --scheduler plateau --validate-every 1" + out),
                  "--validate-every");
}

CAF_TEST(kfold rejects bad flags with one line and exit code 2) {
  test::temp_dir dir;
  auto out = " --out " + (dir / "x").string();
  check_bad_input(pnn_node("kfold --dataset synthetic --folds 1" + out), "--folds 1");
  check_bad_input(pnn_node("kfold --dataset synthetic --models lenet5,nonet" + out), "nonet");
  check_bad_input(pnn_node("kfold --dataset synthetic --schedulers cosine,linear" + out),
                  "--scheduler");
  check_bad_input(pnn_node("kfold --dataset synthetic --hosts 127.0.0.1:1" + out), "--hosts");
  check_bad_input(pnn_node("kfold --dataset synthetic --slots -1" + out), "--slots");
  check_bad_input(pnn_node("kfold --dataset synthetic --validate-every -1" + out),
                  "--validate-every");
  check_bad_input(
    pnn_node("kfold --dataset synthetic --schedulers cosine,plateau --validate-every 0" + out),
    "--validate-every");
  check_bad_input(pnn_node("kfold --dataset synthetic"), "--out");
}

CAF_TEST(kfold runs a grid of learning rates and batch sizes named by the fields that vary) {
  test::temp_dir dir;
  auto r = pnn_node("kfold --dataset synthetic:train=120,test=10 --models lenet --schedulers none "
                    "--lrs 0.001,0.01 --batch-sizes 16,32 --folds 2 --epochs 1 --progress none "
                    "--out " + (dir / "kf").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "4 configurations"));
  CAF_CHECK(test::contains(r.out, "lenet / none / lr=0.01 / bs=16"));
  auto summary = nlohmann::json::parse(test::read_text(dir / "kf/summary.json"));
  CAF_REQUIRE_EQUAL(summary["table"].size(), 4u);
  CAF_REQUIRE_EQUAL(summary["jobs"].size(), 8u);
  std::set<std::string> configs;
  for (const auto& row : summary["table"]) {
    configs.insert(row["config"].get<std::string>());
    CAF_CHECK_EQUAL(row["folds_ok"].get<int>(), 2);
  }
  CAF_CHECK_EQUAL(configs, (std::set<std::string>{"lenet/none/lr=0.001/bs=16",
                                                  "lenet/none/lr=0.001/bs=32",
                                                  "lenet/none/lr=0.01/bs=16",
                                                  "lenet/none/lr=0.01/bs=32"}));
  // Each job ran with its configuration's values, in its own folder.
  for (const auto& job : summary["jobs"]) {
    const auto config = job["config"].get<std::string>();
    CAF_CHECK(configs.count(config));
    CAF_CHECK(test::contains(config, "bs=" + std::to_string(job["batch_size"].get<int>())));
    const auto dir_of_job = dir / "kf" / job["dir"].get<std::string>();
    CAF_CHECK(std::filesystem::exists(dir_of_job / "result.json"));
    auto settings = nlohmann::json::parse(test::read_text(dir_of_job / "result.json"))["settings"]
                      .get<std::string>();
    CAF_CHECK(test::contains(settings, "batch_size=" + std::to_string(job["batch_size"].get<int>())));
  }
  CAF_CHECK(std::filesystem::exists(dir / "kf/lenet/none/lr_0.01/bs_16/fold1/epochs.csv"));
  CAF_CHECK(std::filesystem::exists(dir / "kf/lenet/none/lr_0.01/bs_16/time.json"));
  CAF_CHECK_EQUAL(summary["grid"]["lrs"].size(), 2u);
  CAF_CHECK(!summary.contains("lr")); // no single value: each row and job names its own
  CAF_CHECK_EQUAL(summary["optimizer"].get<std::string>(), "adam"); // one value: kept
  const auto md = test::read_text(dir / "kf/summary.md");
  CAF_CHECK(test::contains(md, "| lenet | none | 0.01 | 16 |"));
  const auto report = test::read_text(dir / "kf/report.md");
  CAF_CHECK(test::contains(report, "| lenet/none/lr=0.01/bs=16 |"));
  // Bad grids: one line naming the flag.
  auto out = " --out " + (dir / "x").string();
  check_bad_input(pnn_node("kfold --dataset synthetic --lrs 0.01,abc" + out), "--lrs");
  check_bad_input(pnn_node("kfold --dataset synthetic --lrs 0.01,-1" + out), "--lrs");
  check_bad_input(pnn_node("kfold --dataset synthetic --lrs 0.01 --lr 0.1" + out), "--lrs");
  check_bad_input(pnn_node("kfold --dataset synthetic --batch-sizes 32,0" + out), "--batch-sizes");
  check_bad_input(pnn_node("kfold --dataset synthetic --batch-sizes 32,6x4" + out),
                  "--batch-sizes");
  check_bad_input(pnn_node("kfold --dataset synthetic --optimizers adam,rmsprop" + out),
                  "--optimizer");
  check_bad_input(pnn_node("kfold --dataset synthetic --lrs 0.001,1e-3" + out), "twice");
  check_bad_input(pnn_node("kfold --dataset synthetic --models lenet,lenet" + out), "twice");
}

CAF_TEST(hogwild trains one model with two workers and writes its summary) {
  test::temp_dir dir;
  auto out = dir / "hw";
  auto r = pnn_node("hogwild --dataset synthetic:train=256,test=64 --model lenet5 --workers 2 "
                    "--epochs 2 --progress plain --out "
                    + out.string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "test accuracy"));
  CAF_CHECK(test::contains(r.out, "samples/s"));
  auto s = nlohmann::json::parse(test::read_text(out / "summary.json"));
  for (const char* key :
       {"wall_seconds", "cpu_utilization_mean", "test_accuracy", "samples_per_second"})
    CAF_CHECK(s.contains(key));
  CAF_CHECK_EQUAL(s["workers"].get<int>(), 2);
  CAF_CHECK_EQUAL(s["worker_list"].size(), 2u);
  for (const char* f : {"loss.csv", "loss_worker0.csv", "loss_worker1.csv", "confusion.csv"})
    CAF_CHECK(std::filesystem::exists(out / f));
}

CAF_TEST(hogwild rejects bad flags with one line and exit code 2) {
  test::temp_dir dir;
  const std::string out = " --out " + (dir / "x").string();
  check_bad_input(pnn_node("hogwild --dataset synthetic --workers -2" + out), "--workers -2");
  check_bad_input(pnn_node("hogwild --dataset synthetic --epochs 0" + out), "--epochs 0");
  check_bad_input(pnn_node("hogwild --dataset synthetic --model nonet" + out), "nonet");
  check_bad_input(pnn_node("hogwild --dataset synthetic --scheduler linear" + out), "--scheduler");
  check_bad_input(pnn_node("hogwild --dataset synthetic --threads-per-worker 0" + out),
                  "--threads-per-worker");
  check_bad_input(pnn_node("hogwild --dataset synthetic:train=4,test=4 --workers 5" + out),
                  "--workers 5");
  check_bad_input(pnn_node("hogwild --dataset synthetic"), "--out");
}

CAF_TEST(dry run checks every flag and the config file and touches nothing) {
  test::temp_dir dir;
  const auto out = dir / "never";
  std::ofstream(dir / "kfold.cfg") << "dataset = synthetic\nmodels = lenet5,alexnet\nfolds = 3\n";
  std::ofstream(dir / "bad.cfg") << "dataset = synthetic\nfolds = 1\n";
  const std::string o = " --dry-run --out " + out.string();
  for (const std::string& cmd :
       {"kfold --config " + (dir / "kfold.cfg").string(), std::string{"train --dataset synthetic"},
        std::string{"hogwild --dataset synthetic --workers 2"},
        std::string{"sgd --dataset synthetic --hosts 127.0.0.1:7"}}) {
    auto r = pnn_node(cmd + o);
    CAF_CHECK_EQUAL(r.exit_code, 0);
    CAF_CHECK(test::contains(r.out, "flags ok"));
    if (r.exit_code != 0)
      CAF_MESSAGE(cmd << ": " << r.err);
  }
  auto serve = pnn_node("serve --port 0 --dry-run");
  CAF_CHECK_EQUAL(serve.exit_code, 0);
  CAF_CHECK(test::contains(serve.out, "flags ok"));
  CAF_CHECK(!std::filesystem::exists(out));
  // The same checks as a real run: a bad value in the file, a bad flag, a bad model.
  check_bad_input(pnn_node("kfold --config " + (dir / "bad.cfg").string() + o), "--folds 1");
  check_bad_input(pnn_node("train --dataset synthetic --optimizer rmsprop" + o), "--optimizer");
  check_bad_input(pnn_node("sgd --dataset synthetic --hosts nohost" + o), "--hosts nohost");
  check_bad_input(pnn_node("serve --port 70000 --dry-run"), "--port 70000");
  CAF_CHECK(!std::filesystem::exists(out));
}

CAF_TEST(flags and config keys that look like message placeholders do not hang the parser) {
  // Found by fuzz/config_parser.cpp: Boost.ProgramOptions looped forever building
  // the error for an option named %canonical_option%.
  test::temp_dir dir;
  std::ofstream(dir / "evil.cfg") << "%canonical_option% = 1\n";
  const std::string o = " --dry-run --out " + (dir / "x").string();
  auto guarded = [](const std::string& args) {
    return test::run_command("timeout 60 " + node + " " + args);
  };
  check_bad_input(guarded("train --config " + (dir / "evil.cfg").string() + o), "evil.cfg");
  check_bad_input(guarded("train --%canonical_option%" + o), "canonical_option");
  check_bad_input(guarded("train --lr=%value%%option%" + o), "--lr");
  check_bad_input(guarded("kfold --folds %original_token%" + o), "--folds");
}

CAF_TEST(an output folder that cannot be created is refused before any work) {
  test::temp_dir dir;
  test::write_bytes(dir / "file", {1, 2, 3});
  const auto out = " --out " + (dir / "file" / "run").string();
  check_bad_input(pnn_node("train --dataset synthetic --subset 64" + out), "--out");
  check_bad_input(pnn_node("kfold --dataset synthetic --subset 64" + out), "--out");
  check_bad_input(pnn_node("hogwild --dataset synthetic --subset 64" + out), "--out");
  check_bad_input(pnn_node("sgd --dataset synthetic --subset 64" + out), "cannot create folder");
}

namespace {

/// Runs `args` with --out inside a 300 KiB tmpfs of a private mount namespace (needs
/// root, as on CI): the disk fills up in the middle of the run.
test::process_result on_full_disk(const test::temp_dir& dir, const std::string& args) {
  auto mnt = dir / "small";
  std::filesystem::create_directory(mnt);
  auto script = "mount -t tmpfs -o size=300k tmpfs " + mnt.string() + " && " + node + " " + args
    + " --out " + (mnt / "run").string() + "; rc=\\$?; find " + mnt.string()
    + " -name '*.tmp.*' >&2; exit \\$rc";
  return test::run_command("unshare -m sh -c \"" + script + "\"");
}

} // namespace

CAF_TEST(a disk that fills up mid - run is one clear error and leaves no torn files) {
  test::temp_dir dir;
  CAF_REQUIRE_EQUAL(std::system("unshare -m true"), 0); // root with mount namespaces
  auto train = on_full_disk(dir, "train --dataset synthetic --subset 64 --progress none");
  CAF_CHECK_EQUAL(train.exit_code, 1);
  CAF_CHECK(test::contains(train.err, "epoch_1.pt: write failed: No space left on device"));
  CAF_CHECK_EQUAL(std::count(train.err.begin(), train.err.end(), '\n'), 1); // no *.tmp.* found
  auto kfold = on_full_disk(dir,
                            "kfold --dataset synthetic --subset 256 --folds 2 --epochs 1 "
                            "--checkpoint-every 1 --progress none");
  CAF_CHECK_EQUAL(kfold.exit_code, 1);
  CAF_CHECK(test::contains(kfold.err, "2 job(s) failed"));
  CAF_CHECK(test::contains(kfold.err, "No space left on device"));
  CAF_CHECK_EQUAL(std::count(kfold.err.begin(), kfold.err.end(), '\n'), 1);
  CAF_MESSAGE("train: " << train.err << "kfold: " << kfold.err);
}

namespace {

/// Width and height of a PNG file, {0, 0} when it is not one (signature, IHDR).
std::pair<uint32_t, uint32_t> png_size(const std::filesystem::path& file) {
  auto bytes = test::read_text(file);
  static const std::string signature = "\x89PNG\r\n\x1a\n";
  if (bytes.size() < 33 || bytes.compare(0, 8, signature) != 0 || bytes.compare(12, 4, "IHDR") != 0)
    return {0, 0};
  auto be32 = [&](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i)
      v = (v << 8) | static_cast<uint8_t>(bytes[at + i]);
    return v;
  };
  return {be32(16), be32(20)};
}

/// Every plot is a real PNG and both report files show it.
void check_report(const std::filesystem::path& run, const std::vector<std::string>& plots) {
  const auto md = test::read_text(run / "report.md");
  const auto html = test::read_text(run / "report.html");
  for (const auto& p : plots) {
    auto file = run / "report" / (p + ".png");
    auto [w, h] = png_size(file);
    CAF_CHECK_GREATER(w, 100u);
    CAF_CHECK_GREATER(h, 100u);
    CAF_CHECK_GREATER(std::filesystem::file_size(file), 2000u); // more than an empty frame
    CAF_CHECK(test::contains(md, "](report/" + p + ".png)"));
    CAF_CHECK(test::contains(html, "<img src=\"report/" + p + ".png\""));
    if (w == 0)
      CAF_MESSAGE(file << " is not a PNG");
  }
}

} // namespace

CAF_TEST(a kfold run ends with a report and report compares it with a serial run) {
  test::temp_dir dir;
  const std::string run = "kfold --dataset synthetic:train=240,test=20 --models lenet5,alexnet "
                          "--schedulers cosine --folds 2 --epochs 1 --progress none";
  auto serial = pnn_node(run + " --serial --no-report --out " + (dir / "serial").string());
  CAF_REQUIRE_EQUAL(serial.exit_code, 0);
  CAF_CHECK(!std::filesystem::exists(dir / "serial" / "report.md"));
  auto parallel = pnn_node(run + " --out " + (dir / "parallel").string());
  CAF_REQUIRE_EQUAL(parallel.exit_code, 0);
  CAF_CHECK(test::contains(parallel.out, "report.md"));
  check_report(dir / "parallel", {"accuracy", "per_class", "timeline", "cpu"});
  auto r =
    pnn_node("report " + (dir / "parallel").string() + " --compare " + (dir / "serial").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  check_report(dir / "parallel", {"accuracy", "per_class", "timeline", "cpu", "speedup"});
  const auto md = test::read_text(dir / "parallel" / "report.md");
  // The tables: accuracy per model x scheduler, and the speedup per model.
  CAF_CHECK(test::contains(md, "| lenet5 | cosine |"));
  CAF_CHECK(test::contains(md, "| alexnet | cosine |"));
  CAF_CHECK(test::contains(md, "speedup"));
  // The accuracy axis hugs the data (mean ± std of every configuration), not 0..1.
  auto s = nlohmann::json::parse(test::read_text(dir / "parallel" / "summary.json"));
  double lo = 1, hi = 0;
  for (const auto& c : s["table"]) {
    lo = std::min(lo, c["val_accuracy_mean"].get<double>() - c["val_accuracy_std"].get<double>());
    hi = std::max(hi, c["val_accuracy_mean"].get<double>() + c["val_accuracy_std"].get<double>());
  }
  const auto gp = test::read_text(dir / "parallel" / "report" / "report.gp");
  const auto at = gp.find("set yrange [", gp.find("set output \"accuracy.png\""));
  CAF_REQUIRE(at != std::string::npos);
  const double y0 = std::stod(gp.substr(at + 12));
  const double y1 = std::stod(gp.substr(gp.find(':', at) + 1));
  CAF_MESSAGE("accuracy " << lo << ".." << hi << ", axis " << y0 << ".." << y1);
  const double bottom = lo > 0 ? lo : 0.0, top = hi < 1 ? hi : 1.0;
  const double room = 0.2 * (hi - lo) + 0.006;
  const double lowest = lo - room > 0 ? lo - room : 0.0, highest = hi + room < 1 ? hi + room : 1.0;
  CAF_CHECK_LESS_OR_EQUAL(y0, bottom);
  CAF_CHECK_GREATER_OR_EQUAL(y0, lowest);
  CAF_CHECK_GREATER_OR_EQUAL(y1, top);
  CAF_CHECK_LESS_OR_EQUAL(y1, highest);
  // Training loss per job: one data block per job (4), smoothed steps.
  const auto loss = test::read_text(dir / "parallel" / "report" / "train_loss.csv");
  size_t blocks = 0;
  for (size_t p = loss.find("\n\n\n"); p != std::string::npos; p = loss.find("\n\n\n", p + 3))
    ++blocks;
  CAF_CHECK_EQUAL(blocks, 4u);
  // Two runs side by side: a column per run, every configuration, their wall times.
  auto both = pnn_node("report " + (dir / "parallel").string() + " " + (dir / "serial").string());
  CAF_REQUIRE_EQUAL(both.exit_code, 0);
  check_report(dir / "parallel",
               {"accuracy", "train_loss", "per_class", "timeline", "cpu", "side_by_side"});
  const auto md2 = test::read_text(dir / "parallel" / "report.md");
  CAF_CHECK(test::contains(md2, "## Runs side by side"));
  CAF_CHECK(test::contains(md2, "| configuration | parallel | serial |"));
  CAF_CHECK(test::contains(md2, "| lenet5/cosine | "));
  CAF_CHECK(test::contains(md2, "| wall time (s) | "));
  const auto side = test::read_text(dir / "parallel" / "report" / "side_by_side.csv");
  CAF_CHECK_EQUAL(std::count(side.begin(), side.end(), '\n'), 2 * (2 + 2));
  check_bad_input(pnn_node("report " + (dir / "parallel").string() + " " + (dir / "nothing").string()),
                  "nothing");
  // Bad input: one line, exit code 2; no gnuplot: one line, exit code 1.
  check_bad_input(pnn_node("report " + (dir / "nothing").string()), "nothing");
  check_bad_input(pnn_node("report " + dir.path().string()), "summary.json");
  check_bad_input(pnn_node("report"), "report");
  auto no_gnuplot =
    pnn_node("report " + (dir / "parallel").string() + " --gnuplot /nonexistent/gp");
  CAF_CHECK_EQUAL(no_gnuplot.exit_code, 1);
  CAF_CHECK(test::contains(no_gnuplot.err, "gnuplot"));
  CAF_CHECK_EQUAL(std::count(no_gnuplot.err.begin(), no_gnuplot.err.end(), '\n'), 1);
}

CAF_TEST(a pruned kfold reports accuracy per epoch cut where pruning stopped and its savings) {
  test::temp_dir dir;
  auto r = pnn_node("kfold --dataset synthetic:train=300,test=10,noise=120 --models lenet "
                    "--schedulers none --lrs 0.0003,0.003,0.01 --folds 2 --epochs 3 "
                    "--prune halving --progress none --out " + (dir / "kf").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  CAF_CHECK(test::contains(r.out, "pruned after epoch 1"));
  check_report(dir / "kf", {"accuracy", "val_epochs", "val_loss_epochs", "train_loss",
                            "per_class", "timeline", "cpu"});
  const auto md = test::read_text(dir / "kf" / "report.md");
  CAF_CHECK(test::contains(md, "## Pruning"));
  CAF_CHECK(test::contains(md, "halving:eta=3,min_epochs=1"));
  // The curves: one data block per configuration, the pruned ones one epoch long,
  // and a cross where each stopped.
  const auto curves = test::read_text(dir / "kf" / "report" / "val_epochs.csv");
  CAF_CHECK_EQUAL(std::count(curves.begin(), curves.end(), '\n'), (3 + 2) + (1 + 2) + (1 + 2));
  const auto ends = test::read_text(dir / "kf" / "report" / "pruned_ends.csv");
  CAF_CHECK_EQUAL(std::count(ends.begin(), ends.end(), '\n'), 2);
  // Bad --prune: one line naming the flag.
  auto out = " --out " + (dir / "x").string();
  check_bad_input(pnn_node("kfold --dataset synthetic --prune halving:eta=1" + out), "--prune");
  check_bad_input(pnn_node("kfold --dataset synthetic --prune halving --epochs 1" + out),
                  "--prune");
  check_bad_input(pnn_node("kfold --dataset synthetic --prune asha" + out), "--prune");
}

CAF_TEST(a hogwild report draws loss against time for each compared run) {
  test::temp_dir dir;
  const std::string run = "hogwild --dataset synthetic:train=256,test=64 --model lenet5 "
                          "--epochs 1 --progress none --no-report";
  CAF_REQUIRE_EQUAL(pnn_node(run + " --workers 2 --out " + (dir / "two").string()).exit_code, 0);
  CAF_REQUIRE_EQUAL(pnn_node(run + " --workers 1 --out " + (dir / "one").string()).exit_code, 0);
  auto r = pnn_node("report " + (dir / "two").string() + " --compare " + (dir / "one").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  check_report(dir / "two", {"loss", "accuracy", "throughput", "per_class", "cpu"});
  const auto gp = test::read_text(dir / "two" / "report" / "report.gp");
  CAF_CHECK(test::contains(gp, "hogwild 2 worker(s)"));
  CAF_CHECK(test::contains(gp, "hogwild 1 worker(s)"));
  // A kfold run is no hogwild comparison.
  auto k =
    pnn_node("kfold --dataset synthetic:train=64,test=8 --folds 2 --epochs 1 --progress none "
             "--no-report --out "
             + (dir / "k").string());
  CAF_REQUIRE_EQUAL(k.exit_code, 0);
  check_bad_input(
    pnn_node("report " + (dir / "two").string() + " --compare " + (dir / "k").string()),
    "--compare");
}

CAF_TEST(docs / cli.md names every flag of every command) {
  const auto doc = test::read_text(std::filesystem::path(PNN_SOURCE_DIR) / "docs" / "cli.md");
  for (const char* command :
       {"train", "kfold", "hogwild", "sgd", "serve", "report", "models", "datasets"}) {
    auto help = pnn_node(std::string{command} + " --help");
    CAF_REQUIRE_EQUAL(help.exit_code, 0);
    CAF_CHECK(test::contains(doc, std::string{"## "} + command)
              || test::contains(doc, std::string{", "} + command));
    size_t flags = 0;
    // Flags start a line of --help ("  --name arg ..."); wrapped text is indented more.
    for (size_t at = help.out.find("\n  --"); at != std::string::npos;
         at = help.out.find("\n  --", at + 5)) {
      auto end = help.out.find_first_of(" \n", at + 3);
      auto flag = help.out.substr(at + 3, end - at - 3);
      ++flags;
      // The whole flag: not followed by more of a flag's characters.
      bool found = false;
      for (size_t p = doc.find(flag); p != std::string::npos && !found; p = doc.find(flag, p + 1)) {
        char next = p + flag.size() < doc.size() ? doc[p + flag.size()] : ' ';
        found = !(std::isalnum(static_cast<unsigned char>(next)) || next == '-');
      }
      if (!found)
        CAF_FAIL(command << " " << flag << " is not in docs/cli.md");
    }
    CAF_CHECK_GREATER(flags, 0u);
  }
}

namespace {

/// Reads `run`'s output until its first progress line showing a batch of epoch 1..E
/// (`marker`, e.g. "/2 b"), sends SIGINT, and checks it ends with exit code 130.
/// Returns its stderr (written to `err`) and the continue command printed last.
std::pair<std::string, std::string> interrupt_mid_run(test::background_process& run,
                                                      const std::string& banner,
                                                      const std::string& marker,
                                                      const std::filesystem::path& err) {
  CAF_REQUIRE(test::contains(run.read_line(), banner));
  for (std::string line = "-"; !test::contains(line, marker);) {
    line = run.read_line();
    CAF_REQUIRE(!line.empty()); // no progress line within the timeout, or the run ended
  }
  ::kill(run.pid(), SIGINT);
  const int status = run.wait_exit(static_cast<int>(60000 * test::time_scale()));
  CAF_REQUIRE(WIFEXITED(status));
  CAF_CHECK_EQUAL(WEXITSTATUS(status), 130);
  const auto text = test::read_text(err);
  CAF_MESSAGE(text);
  const auto nl = text.rfind("\n  ");
  CAF_REQUIRE(nl != std::string::npos);
  const auto again = text.substr(nl + 3, text.find('\n', nl + 3) - nl - 3);
  CAF_CHECK(test::contains(again, "--resume"));
  return {text, again};
}

} // namespace

CAF_TEST(ctrl - c saves every running job and the continued run ends as an uninterrupted one) {
  test::temp_dir dir;
  const std::string run = "kfold --dataset synthetic:train=8000,test=10 --models lenet5 "
                          "--schedulers cosine,warm --folds 2 --epochs 2 --slots 2 "
                          "--threads-per-job 1 --no-tail-threads --no-report --progress plain";
  // The reference: the same run never interrupted.
  CAF_REQUIRE_EQUAL(pnn_node(run + " --out " + (dir / "straight").string()).exit_code, 0);
  const auto out = dir / "cut";
  test::background_process cut{node + " " + run + " --out " + out.string() + " 2>"
                               + (dir / "err.txt").string()};
  // Into the first two jobs (no --checkpoint-every: nothing saved on its own), as
  // soon as the progress line shows a batch, then Ctrl-C.
  const auto [err, again] = interrupt_mid_run(cut, "pnn kfold:", "/2 b", dir / "err.txt");
  CAF_CHECK(test::contains(err, "interrupted"));
  CAF_CHECK(test::contains(again, "--out " + out.string()));
  auto s = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(s["interrupted"].get<bool>());
  int saved = 0;
  for (const auto& j : s["jobs"])
    saved += std::filesystem::exists(out / "lenet5" / j["scheduler"].get<std::string>()
                                     / ("fold" + std::to_string(j["fold"].get<int>()))
                                     / "latest.pt")
      ? 1
      : 0;
  CAF_CHECK_GREATER_OR_EQUAL(saved, 1);
  // The exact command it printed continues the run.
  auto r = test::run_command(again);
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto a = nlohmann::json::parse(test::read_text(dir / "straight" / "summary.json"));
  auto b = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(!b["interrupted"].get<bool>());
  CAF_REQUIRE_EQUAL(a["jobs"].size(), b["jobs"].size());
  int resumed = 0;
  for (size_t i = 0; i < a["jobs"].size(); ++i) {
    CAF_CHECK(b["jobs"][i]["ok"].get<bool>());
    // The same numbers to the last digit, mid-epoch resume or not.
    CAF_CHECK_EQUAL(a["jobs"][i]["val_loss"].get<double>(), b["jobs"][i]["val_loss"].get<double>());
    CAF_CHECK_EQUAL(a["jobs"][i]["train_loss"].get<double>(),
                    b["jobs"][i]["train_loss"].get<double>());
    resumed += b["jobs"][i]["resumed_from_step"].get<int>() > 0 ? 1 : 0;
  }
  // The jobs that were running went on from where they stopped, not from scratch.
  CAF_CHECK_EQUAL(resumed, saved);
}

CAF_TEST(ctrl - c stops hogwild where it is and the printed command finishes it exactly) {
  test::temp_dir dir;
  const std::string run = "hogwild --dataset synthetic:train=8000,test=200 --model lenet5 "
                          "--epochs 2 --progress plain --no-report";
  // One worker is deterministic: the continued run ends as the uninterrupted one.
  CAF_REQUIRE_EQUAL(pnn_node(run + " --workers 1 --out " + (dir / "straight").string()).exit_code,
                    0);
  const auto out = dir / "cut";
  test::background_process cut{node + " " + run + " --workers 1 --out " + out.string() + " 2>"
                               + (dir / "err.txt").string()};
  const auto again = interrupt_mid_run(cut, "pnn hogwild:", "e1/2 b", dir / "err.txt").second;
  auto s = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(s["interrupted"].get<bool>());
  CAF_CHECK(std::filesystem::exists(out / "model.pt"));
  CAF_CHECK(std::filesystem::exists(out / "workers" / "worker0" / "latest.pt"));
  CAF_CHECK_LESS(s["worker_list"][0]["samples"].get<int64_t>(), 16000);
  auto r = test::run_command(again);
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto a = nlohmann::json::parse(test::read_text(dir / "straight" / "summary.json"));
  auto b = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(!b["interrupted"].get<bool>());
  CAF_CHECK_EQUAL(a["final_train_loss"].get<double>(), b["final_train_loss"].get<double>());
  CAF_CHECK_EQUAL(a["test_loss"].get<double>(), b["test_loss"].get<double>());
  CAF_CHECK_EQUAL(b["worker_list"][0]["samples"].get<int64_t>(), 16000);
  CAF_CHECK_EQUAL(b["worker_list"][0]["steps"].get<int64_t>(), 500); // the steps before it too
  CAF_CHECK(!std::filesystem::exists(out / "workers" / "worker0" / "latest.pt")); // cleaned up
  // Two workers on the shared queue: the resumed run takes every batch exactly once.
  // (3x the samples: two workers would finish 8,000 before their first progress line.)
  const auto two = dir / "two";
  const std::string run2 = "hogwild --dataset synthetic:train=24000,test=200 --model lenet5 "
                           "--epochs 2 --progress plain --no-report";
  test::background_process cut2{node + " " + run2 + " --workers 2 --out " + two.string() + " 2>"
                                + (dir / "err2.txt").string()};
  const auto again2 = interrupt_mid_run(cut2, "pnn hogwild:", "e1/2 b", dir / "err2.txt").second;
  CAF_REQUIRE(std::filesystem::exists(two / "batch_queue.json"));
  // Another setting is refused, naming the flag.
  r = test::run_command(again2 + " --lr 0.1");
  CAF_CHECK_EQUAL(r.exit_code, 2);
  CAF_CHECK(test::contains(r.err, "--lr"));
  r = test::run_command(again2);
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto c = nlohmann::json::parse(test::read_text(two / "summary.json"));
  int64_t samples = 0;
  for (const auto& w : c["worker_list"])
    samples += w["samples"].get<int64_t>();
  CAF_CHECK_EQUAL(samples, 48000);
  // Nothing to resume in a finished run.
  r = test::run_command(again2);
  CAF_CHECK_EQUAL(r.exit_code, 2);
  CAF_CHECK(test::contains(r.err, "finished run"));
}

CAF_TEST(ctrl - c stops sgd with the holder saved and the printed command goes on from it) {
  test::temp_dir dir;
  const auto out = dir / "run";
  test::background_process cut{node
                               + " sgd --dataset synthetic:train=20000,test=200 --model lenet5 "
                                 "--slots 2 --epochs 3 --n-push 5 --n-pull 5 --progress plain "
                                 "--no-report --out "
                               + out.string() + " 2>" + (dir / "err.txt").string()};
  const auto again = interrupt_mid_run(cut, "pnn sgd:", "/3 b", dir / "err.txt").second;
  auto a = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(a["interrupted"].get<bool>());
  CAF_CHECK(a["failed_workers"].empty());
  const auto version = a["holder"]["version"].get<int64_t>();
  CAF_CHECK_GREATER(version, 0);
  // Stopped early: fewer updates than 3 epochs of 2 x 10,000 samples in 5-batch pushes.
  CAF_CHECK_LESS(version, 3 * 2 * 313 / 5);
  CAF_REQUIRE(std::filesystem::exists(out / "holder.pt"));
  // The printed command goes on from the holder's parameters.
  auto r = test::run_command(again);
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto b = nlohmann::json::parse(test::read_text(out / "summary.json"));
  CAF_CHECK(!b["interrupted"].get<bool>());
  CAF_CHECK_EQUAL(b["resumed_from_version"].get<int64_t>(), version);
}
