#include <torch/torch.h>

#define CAF_SUITE training.job
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/models/network.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>

#include <cmath>

using namespace pnn;
using namespace pnn::training;

namespace {

dataset_pair small_data() {
  synthetic_options o;
  o.train_size = 320;
  o.test_size = 200;
  o.noise = 90;
  return make_synthetic(o);
}

job_options small_options() {
  job_options o;
  o.model = "lenet5";
  o.optimizer = optimizer_options::parse("adam", 1e-3);
  o.schedule = schedule_options::parse("cosine");
  o.epochs = 2;
  o.batch_size = 32;
  o.seed = 3;
  o.threads = 1;
  o.train_transform = default_transform("synthetic", true);
  o.eval_transform = default_transform("synthetic", false);
  return o;
}

std::vector<double> losses(const training_job& job) {
  std::vector<double> result;
  for (const auto& s : job.step_records())
    result.push_back(s.loss);
  return result;
}

} // namespace

CAF_TEST(a job learns the synthetic classes) {
  auto data = small_data();
  auto o = small_options();
  o.epochs = 3;
  training_job job{o, data.train, all_indices(data.train->size()), {}};
  job.run_to_end();
  CAF_CHECK(job.done());
  CAF_CHECK_EQUAL(job.epochs_done(), 3);
  CAF_CHECK_EQUAL(job.steps_done(), 3 * 10);
  auto test = job.evaluate(*data.test, all_indices(data.test->size()));
  CAF_MESSAGE("test accuracy " << test.accuracy);
  CAF_CHECK_GREATER(test.accuracy, 0.9);
  CAF_CHECK_LESS(job.epoch_records().back().train_loss, job.epoch_records().front().train_loss);
}

CAF_TEST(the same seed gives the same losses and another seed different ones) {
  auto data = small_data();
  auto o = small_options();
  o.epochs = 1;
  training_job a{o, data.train, all_indices(data.train->size()), {}};
  training_job b{o, data.train, all_indices(data.train->size()), {}};
  a.run_to_end();
  b.run_to_end();
  CAF_CHECK(losses(a) == losses(b));
  o.seed = 4;
  training_job c{o, data.train, all_indices(data.train->size()), {}};
  c.run_to_end();
  CAF_CHECK(losses(a) != losses(c));
}

CAF_TEST(slices of any size give the same run as one call) {
  auto data = small_data();
  auto o = small_options();
  training_job a{o, data.train, all_indices(data.train->size()), {}};
  training_job b{o, data.train, all_indices(data.train->size()), {}};
  a.run_to_end();
  int calls = 0;
  while (!b.run(3))
    ++calls;
  CAF_CHECK_GREATER(calls, 5);
  CAF_CHECK(losses(a) == losses(b));
}

CAF_TEST(a validation set is evaluated at every epoch end) {
  auto data = small_data();
  auto o = small_options();
  auto fold = make_fold(data.train->size(), 4, 0, 9);
  training_job job{o, data.train, fold.train, fold.validation};
  job.run_to_end();
  CAF_REQUIRE_EQUAL(job.epoch_records().size(), 2u);
  for (const auto& e : job.epoch_records()) {
    CAF_CHECK(std::isfinite(e.val_loss));
    CAF_CHECK_GREATER_OR_EQUAL(e.val_accuracy, 0.0);
  }
  CAF_REQUIRE(job.last_validation().has_value());
  CAF_CHECK_EQUAL(job.last_validation()->samples, static_cast<int64_t>(fold.validation.size()));
}

CAF_TEST(validate_every N validates every N epochs and the last and trains the same) {
  auto data = small_data();
  auto fold = make_fold(data.train->size(), 4, 0, 9);
  std::vector<double> reference_losses;
  std::optional<evaluation> reference_last;
  for (int64_t every : {1, 2, 0}) {
    auto o = small_options();
    o.epochs = 5;
    o.validate_every = every;
    training_job job{o, data.train, fold.train, fold.validation};
    job.run_to_end();
    CAF_REQUIRE_EQUAL(job.epoch_records().size(), 5u);
    std::string validated;
    for (const auto& e : job.epoch_records())
      validated += std::isfinite(e.val_accuracy) ? 'v' : '-';
    CAF_MESSAGE("validate_every " << every << ": " << validated);
    CAF_CHECK_EQUAL(validated, every == 1 ? "vvvvv" : every == 2 ? "-v-vv" : "----v");
    // Skipping evaluations changes nothing the job learns (a cosine schedule does
    // not observe losses): the same steps and the same final validation.
    CAF_REQUIRE(job.last_validation().has_value());
    if (every == 1) {
      reference_losses = losses(job);
      reference_last = job.last_validation();
    } else {
      CAF_CHECK(losses(job) == reference_losses);
      CAF_CHECK_EQUAL(job.last_validation()->accuracy, reference_last->accuracy);
      CAF_CHECK_EQUAL(job.last_validation()->loss, reference_last->loss);
    }
  }
  auto o = small_options();
  o.validate_every = -1;
  auto [code, msg] = test::error_of(
    [&] { training_job job(o, data.train, fold.train, fold.validation); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--validate-every -1"));
  // A plateau schedule decays on validation losses: it needs one every epoch.
  o = small_options();
  o.schedule = schedule_options::parse("plateau");
  o.validate_every = 0;
  msg = test::error_of([&] { training_job job(o, data.train, fold.train, fold.validation); }).second;
  CAF_CHECK(test::contains(msg, "plateau"));
  o.validate_every = 1;
  training_job fine(o, data.train, fold.train, fold.validation);
}

CAF_TEST(resuming from an epoch checkpoint reproduces the uninterrupted losses) {
  test::temp_dir dir;
  auto data = small_data();
  auto o = small_options();
  o.epochs = 3;
  o.schedule = schedule_options::parse("warm");
  o.checkpoint_every = 1;
  o.checkpoint_dir = dir.path();
  training_job full{o, data.train, all_indices(data.train->size()), {}};
  full.run_to_end();
  CAF_REQUIRE(std::filesystem::exists(dir / "epoch_1.pt"));
  CAF_REQUIRE(std::filesystem::exists(dir / "latest.pt"));
  auto o2 = o;
  o2.checkpoint_dir = dir / "resumed";
  training_job resumed{o2, data.train, all_indices(data.train->size()), {}};
  resumed.load_checkpoint(dir / "epoch_1.pt");
  CAF_CHECK_EQUAL(resumed.epochs_done(), 1);
  resumed.run_to_end();
  CAF_CHECK(losses(full) == losses(resumed));
  CAF_CHECK_EQUAL(full.epoch_records().back().train_loss,
                  resumed.epoch_records().back().train_loss);
  CAF_CHECK_EQUAL(full.schedule().lr(), resumed.schedule().lr());
}

CAF_TEST(resuming from an epoch checkpoint with augmentation reproduces the run) {
  test::temp_dir dir;
  auto data = small_data();
  auto o = small_options();
  o.epochs = 3;
  o.train_transform.crop_padding = 2;
  o.train_transform.horizontal_flip = true;
  o.checkpoint_every = 1;
  o.checkpoint_dir = dir.path();
  training_job full{o, data.train, all_indices(data.train->size()), {}};
  full.run_to_end();
  for (const char* epoch : {"epoch_1.pt", "epoch_2.pt"}) {
    auto o2 = o;
    o2.checkpoint_dir = dir / "resumed";
    training_job resumed{o2, data.train, all_indices(data.train->size()), {}};
    resumed.load_checkpoint(dir / epoch);
    CAF_CHECK_EQUAL(resumed.batch_in_epoch(), 0);
    resumed.run_to_end();
    // Every step of the epochs after the checkpoint, to the last bit.
    CAF_CHECK(losses(full) == losses(resumed));
    CAF_CHECK_EQUAL(full.epoch_records().back().train_loss,
                    resumed.epoch_records().back().train_loss);
  }
}

CAF_TEST(resuming from a mid - epoch checkpoint with augmentation reproduces the run) {
  test::temp_dir dir;
  auto data = small_data();
  auto o = small_options();
  o.train_transform.crop_padding = 2;
  o.train_transform.horizontal_flip = true;
  training_job full{o, data.train, all_indices(data.train->size()), {}};
  full.run_to_end();
  training_job part{o, data.train, all_indices(data.train->size()), {}};
  part.run(13); // epoch 2, batch 3
  part.save_checkpoint(dir / "mid.pt");
  training_job resumed{o, data.train, all_indices(data.train->size()), {}};
  resumed.load_checkpoint(dir / "mid.pt");
  CAF_CHECK_EQUAL(resumed.batch_in_epoch(), 3);
  resumed.run_to_end();
  CAF_CHECK(losses(full) == losses(resumed));
}

CAF_TEST(checkpoints keep one size however long the run and their steps go to the steps file once) {
  test::temp_dir dir;
  auto data = small_data();
  auto o = small_options();
  o.epochs = 4;
  o.checkpoint_every = 1;
  o.checkpoint_dir = dir.path();
  training_job full{o, data.train, all_indices(data.train->size()), {}};
  full.run_to_end();
  const auto first = std::filesystem::file_size(dir / "epoch_1.pt");
  const auto last = std::filesystem::file_size(dir / "epoch_4.pt");
  CAF_MESSAGE("epoch_1.pt " << first << " bytes, epoch_4.pt " << last << " bytes");
  // Only the epoch log (4 short records) and a few numbers grow; 30 more steps in
  // the checkpoint would add far more than this.
  CAF_CHECK_LESS(last, first + 1024);
  // Every step once in steps.bin, however many checkpoints were saved (8 here).
  CAF_CHECK_EQUAL(std::filesystem::file_size(dir / steps_file_name),
                  8 + step_record_bytes * full.step_records().size());
  // Each checkpoint takes its own prefix of the steps, to the bit.
  for (int epoch = 1; epoch <= 4; ++epoch) {
    training_job back{o, data.train, all_indices(data.train->size()), {}};
    back.load_checkpoint(dir / ("epoch_" + std::to_string(epoch) + ".pt"));
    const auto& steps = back.step_records();
    CAF_REQUIRE_EQUAL(steps.size(), static_cast<size_t>(10 * epoch));
    for (size_t i = 0; i < steps.size(); ++i) {
      CAF_CHECK_EQUAL(steps[i].loss, full.step_records()[i].loss);
      CAF_CHECK_EQUAL(steps[i].step, full.step_records()[i].step);
      CAF_CHECK_EQUAL(steps[i].time, full.step_records()[i].time);
    }
  }
  // Resumed in the same folder from epoch 2, the run overwrites the steps after it.
  training_job again{o, data.train, all_indices(data.train->size()), {}};
  again.load_checkpoint(dir / "epoch_2.pt");
  again.run_to_end();
  CAF_CHECK(losses(full) == losses(again));
  CAF_CHECK_EQUAL(std::filesystem::file_size(dir / steps_file_name),
                  8 + step_record_bytes * full.step_records().size());
  training_job last_one{o, data.train, all_indices(data.train->size()), {}};
  last_one.load_checkpoint(dir / "latest.pt");
  CAF_CHECK(losses(full) == losses(last_one));
  // A steps file shorter than its checkpoint says is refused, naming it.
  std::filesystem::resize_file(dir / steps_file_name, 8 + step_record_bytes * 5);
  training_job short_one{o, data.train, all_indices(data.train->size()), {}};
  try {
    short_one.load_checkpoint(dir / "epoch_1.pt");
    CAF_FAIL("a steps file with 5 of 10 steps was taken");
  } catch (const pnn::error& e) {
    CAF_MESSAGE(e.what());
    CAF_CHECK(test::contains(e.what(), "steps.bin"));
    CAF_CHECK(test::contains(e.what(), "holds 5 steps"));
  }
}

CAF_TEST(a checkpoint of another model or a broken file is refused with the file named) {
  test::temp_dir dir;
  auto data = small_data();
  auto o = small_options();
  training_job job{o, data.train, all_indices(data.train->size()), {}};
  job.save_checkpoint(dir / "lenet5.pt");
  auto other = o;
  other.model = "lenet";
  training_job lenet{other, data.train, all_indices(data.train->size()), {}};
  auto [code, msg] = test::error_of([&] { lenet.load_checkpoint(dir / "lenet5.pt"); });
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "lenet5.pt"));
  test::write_bytes(dir / "junk.pt", {1, 2, 3});
  auto [code2, msg2] = test::error_of([&] { job.load_checkpoint(dir / "junk.pt"); });
  CAF_CHECK(code2 == error_code::malformed_file);
  CAF_CHECK(test::contains(msg2, "junk.pt"));
  auto [code3, msg3] = test::error_of([&] { job.load_checkpoint(dir / "none.pt"); });
  CAF_CHECK(code3 == error_code::file_not_found);
  // A checkpoint of the same model made with other settings (another fold, more
  // epochs) is not this job's.
  auto a = o;
  a.settings = "model=lenet5;fold=0;epochs=2;";
  training_job fold0{a, data.train, all_indices(data.train->size()), {}};
  fold0.save_checkpoint(dir / "fold0.pt");
  auto b = a;
  b.settings = "model=lenet5;fold=1;epochs=3;";
  training_job fold1{b, data.train, all_indices(data.train->size()), {}};
  auto [code4, msg4] = test::error_of([&] { fold1.load_checkpoint(dir / "fold0.pt"); });
  CAF_CHECK(code4 == error_code::malformed_file);
  CAF_CHECK(test::contains(msg4, "fold0.pt: checkpoint was taken with other settings"));
  CAF_CHECK(test::contains(msg4, "epochs 2, now 3, fold 0, now 1"));
  training_job same{a, data.train, all_indices(data.train->size()), {}};
  same.load_checkpoint(dir / "fold0.pt"); // the same settings load
}

CAF_TEST(a diverging loss fails the job with a clear error) {
  auto data = small_data();
  auto o = small_options();
  o.criterion = [](const torch::Tensor& logits, const torch::Tensor& labels) {
    return torch::nn::functional::cross_entropy(logits, labels) * std::nan("");
  };
  training_job job{o, data.train, all_indices(data.train->size()), {}};
  auto [code, msg] = test::error_of([&] { job.run(5); });
  CAF_CHECK(code == error_code::run_failed);
  CAF_CHECK(test::contains(msg, "epoch 1, batch 1"));
}

CAF_TEST(bad job options are errors) {
  auto data = small_data();
  auto o = small_options();
  o.epochs = 0;
  auto [code, msg] =
    test::error_of([&] { training_job job(o, data.train, all_indices(data.train->size()), {}); });
  CAF_CHECK(code == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg, "--epochs 0"));
  o = small_options();
  auto [code2, msg2] = test::error_of([&] { training_job job(o, data.train, {0, 99999}, {}); });
  CAF_CHECK(code2 == error_code::invalid_argument);
  CAF_CHECK(test::contains(msg2, "99999"));
}

CAF_TEST(the confusion matrix counts true against predicted classes) {
  evaluation e;
  // Three samples: true 0 predicted 0, true 1 predicted 0, true 1 predicted 1.
  auto logits = torch::tensor({{2.0f, 1.0f}, {3.0f, 0.0f}, {0.0f, 1.0f}});
  auto labels = torch::tensor({0, 1, 1}, torch::kInt64);
  accumulate(e, logits, labels, 0.6);
  CAF_CHECK(e.confusion == (std::vector<std::vector<int64_t>>{{1, 0}, {1, 1}}));
  CAF_CHECK_EQUAL(e.samples, 3);
  CAF_CHECK(std::abs(e.accuracy - 2.0 / 3.0) < 1e-12);
  CAF_CHECK(std::abs(e.loss - 0.2) < 1e-12);
  auto per_class = e.per_class_accuracy();
  CAF_CHECK_EQUAL(per_class[0], 1.0);
  CAF_CHECK_EQUAL(per_class[1], 0.5);
}

CAF_TEST(evaluation of a whole test set sums to its size) {
  auto data = small_data();
  auto o = small_options();
  o.epochs = 1;
  training_job job{o, data.train, all_indices(data.train->size()), {}};
  job.run_to_end();
  auto e = job.evaluate(*data.test, all_indices(data.test->size()));
  int64_t total = 0, diagonal = 0;
  for (size_t i = 0; i < e.confusion.size(); ++i)
    for (size_t j = 0; j < e.confusion.size(); ++j) {
      total += e.confusion[i][j];
      diagonal += i == j ? e.confusion[i][j] : 0;
    }
  CAF_CHECK_EQUAL(total, data.test->size());
  CAF_CHECK(std::abs(e.accuracy - static_cast<double>(diagonal) / static_cast<double>(total))
            < 1e-12);
}
