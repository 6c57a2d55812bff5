#include <pnn/runtime/train.hpp>

#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/interrupt.hpp>
#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/runtime/cli.hpp>
#include <pnn/training/folders.hpp>
#include <pnn/training/progress.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/tensorboard.hpp>
#include <pnn/system.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <iostream>
#include <sstream>

namespace fs = std::filesystem;

namespace pnn::runtime {

namespace {

using namespace pnn::training;

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2e", v);
  return buf;
}

} // namespace

namespace {

/// <out>/tb/: the job's scalars, the test set's accuracy and loss at its end, and its
/// settings as TensorBoard's HParams experiment and session. A file that cannot be
/// written is a warning: the results are in the other files.
void write_train_events(const train_request& r, const training_job& job, const evaluation& test,
                        double train_samples) {
  namespace tb = training::tensorboard;
  try {
    tb::job_run run;
    run.steps = job.step_records();
    run.epochs = job.epoch_records();
    run.finished_at = wall_clock_seconds();
    run.clock_zero = run.finished_at - job.elapsed_seconds();
    run.samples_per_epoch = train_samples;
    run.hparams = {{"model", r.model},         {"scheduler", r.scheduler},
                   {"optimizer", r.optimizer}, {"lr", r.lr},
                   {"batch_size", static_cast<double>(r.batch_size)},
                   {"epochs", static_cast<double>(r.epochs)},
                   {"seed", static_cast<double>(r.seed)}};
    run.final = {{"test/accuracy", test.accuracy}, {"test/loss", test.loss}};
    run.experiment_metrics = {"test/accuracy", "test/loss", "train/epoch_loss"};
    tb::job_events(run).write(r.out / "tb");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn-node train: no TensorBoard events: %s\n", e.what());
  }
}

} // namespace

int run_train(const train_request& r) {
  const auto wall_start = std::chrono::steady_clock::now();
  // Check every flag before the (slow) dataset load.
  r.output_group::validate();
  if (!models::has_model(r.model))
    models::make_model(r.model, 1, 10); // throws the error that lists valid names
  r.schedule_group::validate();
  if (r.threads < 1 || r.threads > 1024)
    throw pnn::error(error_code::invalid_argument,
                     "--threads " + std::to_string(r.threads) + ": expected 1..1024");
  if (r.checkpoint_every < 0)
    throw pnn::error(error_code::invalid_argument,
                     "--checkpoint-every " + std::to_string(r.checkpoint_every)
                       + ": expected 0 (never) or more");
  if (r.validate_every < 0 || r.validate_every > 1000000)
    throw pnn::error(error_code::invalid_argument,
                     "--validate-every " + std::to_string(r.validate_every)
                       + ": expected 0 (the test set after the last epoch only) or more epochs");
  if (r.validate_every > 0 && r.scheduler.rfind("plateau", 0) == 0)
    throw pnn::error(error_code::invalid_argument,
                     "--validate-every " + std::to_string(r.validate_every)
                       + ": train's plateau schedule decays on the training loss; per-epoch "
                         "test figures would change what it observes (expected 0)");
  progress_line progress{progress_line::parse_mode(r.progress)};
  const auto dir = job_dir(r.out, r.model, r.scheduler, "all");
  job_spec spec;
  spec.model = r.model;
  spec.optimizer = r.optimizer;
  spec.lr = r.lr;
  spec.scheduler = r.scheduler;
  spec.dataset = r.dataset;
  spec.epochs = r.epochs;
  spec.batch_size = r.batch_size;
  spec.seed = r.seed;
  spec.threads = r.threads;
  spec.checkpoint_every = r.checkpoint_every;
  spec.out_dir = dir.string();
  job_options o = job_options_from(spec);
  // Not in the job's settings (spec.validate_every stays 1): evaluating the test set
  // changes nothing in training, so a checkpoint resumes with any N. 0 leaves the
  // job without a validation set.
  o.validate_every = r.validate_every;
  if (r.dry_run) {
    std::printf("pnn-node train: flags ok (--dry-run: nothing run)\n");
    return 0;
  }
  ensure_output_folder(r.out, "--out");
  ensure_directory(dir);

  const auto load_start = std::chrono::steady_clock::now();
  auto data = load_dataset(r.dataset, r.data_dir, r.subset);
  const double load_seconds = seconds_since(load_start);
  std::printf("pnn train: %s on %s (%lld training, %lld test samples, loaded in %.2f s), "
              "%s lr %g, %s, %lld epoch(s), batch %lld, %d thread(s)\n",
              r.model.c_str(), r.dataset.c_str(), static_cast<long long>(data.train->size()),
              static_cast<long long>(data.test->size()), load_seconds, r.optimizer.c_str(), r.lr,
              r.scheduler.c_str(), static_cast<long long>(r.epochs),
              static_cast<long long>(r.batch_size), r.threads);
  std::fflush(stdout);

  cpu_monitor cpu;
  std::vector<int64_t> per_epoch_test;
  if (r.validate_every > 0) {
    o.validation_data = data.test;
    per_epoch_test = all_indices(data.test->size());
  }
  training_job job{o, data.train, all_indices(data.train->size()), per_epoch_test};
  if (r.resume) {
    if (auto latest = find_latest_checkpoint(dir)) {
      job.load_checkpoint(*latest);
      std::printf("resuming from %s: epoch %lld, batch %lld done\n", latest->c_str(),
                  static_cast<long long>(job.epochs_done()),
                  static_cast<long long>(job.batch_in_epoch()));
    } else {
      std::printf("--resume: no checkpoint in %s, starting from the beginning\n", dir.c_str());
    }
  }
  const auto train_start = std::chrono::steady_clock::now();
  const int64_t steps_at_start = job.steps_done();
  const int64_t total_steps = job.batches_per_epoch() * r.epochs;
  std::deque<double> recent;
  double recent_sum = 0;
  job.on_step = [&](const step_record& s) {
    recent.push_back(s.loss);
    recent_sum += s.loss;
    if (recent.size() > 50) {
      recent_sum -= recent.front();
      recent.pop_front();
    }
    double elapsed = seconds_since(train_start);
    double rate = static_cast<double>(s.step - steps_at_start) / std::max(elapsed, 1e-9);
    double eta = static_cast<double>(total_steps - s.step) / std::max(rate, 1e-9);
    progress.update(r.model + "/" + r.scheduler + "  epoch " + std::to_string(s.epoch + 1) + "/"
                    + std::to_string(r.epochs) + "  batch " + std::to_string(s.batch + 1) + "/"
                    + std::to_string(job.batches_per_epoch()) + "  loss "
                    + fixed(recent_sum / static_cast<double>(recent.size()), 4) + "  lr "
                    + sci(s.lr) + "  " + fixed(rate, 0) + " steps/s  ETA " + format_duration(eta));
  };
  job.on_epoch = [&](const epoch_record& e) {
    progress.finish();
    std::printf("epoch %lld/%lld: train loss %.4f, train accuracy %.4f", static_cast<long long>(e.epoch),
                static_cast<long long>(r.epochs), e.train_loss, e.train_accuracy);
    if (!std::isnan(e.val_accuracy))
      std::printf(", test loss %.4f, test accuracy %.4f", e.val_loss, e.val_accuracy);
    std::printf(", %.1f s\n", e.seconds);
    std::fflush(stdout);
    write_file_atomic(dir / "epochs.csv", epochs_csv(job.epoch_records()));
  };
  bool finished = false;
  bool interrupted = false;
  {
    // Ctrl-C: the job stops between two batches and saves where it is.
    interrupt_watch watch{[] {
      std::fprintf(stderr, "\npnn train: interrupted: saving (Ctrl-C again to quit at once)\n");
    }};
    while (!(finished = job.run(4)) && !watch.fired()) {
    }
    interrupted = !finished;
  }
  progress.finish();
  if (interrupted) {
    job.save_checkpoint(dir / "latest.pt");
    write_job_records(dir, job, nullptr, "", data.train->classes);
    nlohmann::json summary{{"command", "train"},
                           {"interrupted", true},
                           {"wall_seconds", seconds_since(wall_start)},
                           {"dataset", r.dataset},
                           {"model", r.model},
                           {"epochs", r.epochs},
                           {"epochs_done", job.epochs_done()},
                           {"batch_in_epoch", job.batch_in_epoch()},
                           {"steps", job.steps_done()},
                           {"job_dir", fs::relative(dir, r.out).string()}};
    write_file_atomic(r.out / "summary.json", summary.dump(2) + "\n");
    return report_interrupted(
      "train", "epoch " + std::to_string(job.epochs_done() + 1) + " of " + std::to_string(r.epochs)
                 + " after batch " + std::to_string(job.batch_in_epoch()) + ", saved in "
                 + (dir / "latest.pt").string());
  }
  const double train_seconds = seconds_since(train_start);
  const int64_t steps_run = job.steps_done() - steps_at_start;

  // With --validate-every the job has just evaluated the test set after its last epoch.
  auto test = r.validate_every > 0 && job.last_validation() && steps_run > 0
    ? *job.last_validation()
    : job.evaluate(*data.test, all_indices(data.test->size()));
  cpu.stop();
  const double wall = seconds_since(wall_start);
  const auto times = process_cpu_times();

  // Outputs (DESIGN.md): job folder, time.json, summary.json/.md, cpu.csv, tb/.
  write_job_records(dir, job, &test, "test", data.test->classes);
  write_train_events(r, job, test, static_cast<double>(data.train->size()));
  if (r.checkpoint_every > 0 && r.epochs % r.checkpoint_every != 0)
    job.save_checkpoint(dir / "latest.pt");
  nlohmann::json epochs = nlohmann::json::array();
  for (const auto& e : job.epoch_records())
    epochs.push_back(to_json(e));
  nlohmann::json test_json = to_json(test, data.test->classes);
  nlohmann::json time_json{{"train_seconds", train_seconds},
                           {"load_seconds", load_seconds},
                           {"wall_seconds", wall},
                           {"steps", steps_run},
                           {"steps_per_second", steps_run / std::max(train_seconds, 1e-9)}};
  write_file_atomic(r.out / folder_name(r.model) / folder_name(r.scheduler) / "time.json",
                    time_json.dump(2) + "\n");
  const double samples_per_second =
    static_cast<double>(std::min<int64_t>(steps_run * r.batch_size, steps_run * data.train->size()))
    / std::max(train_seconds, 1e-9);
  nlohmann::json summary{{"command", "train"},
                         {"wall_seconds", wall},
                         {"cpu_utilization_mean", cpu.mean_utilization()},
                         {"test_accuracy", test.accuracy},
                         {"test_loss", test.loss},
                         {"dataset", r.dataset},
                         {"train_samples", data.train->size()},
                         {"test_samples", data.test->size()},
                         {"model", r.model},
                         {"parameters", models::parameter_count(*job.model())},
                         {"optimizer", r.optimizer},
                         {"lr", r.lr},
                         {"scheduler", r.scheduler},
                         {"epochs", r.epochs},
                         {"validate_every", r.validate_every},
                         {"batch_size", r.batch_size},
                         {"seed", r.seed},
                         {"threads", r.threads},
                         {"load_seconds", load_seconds},
                         {"train_seconds", train_seconds},
                         {"steps_per_second", steps_run / std::max(train_seconds, 1e-9)},
                         {"samples_per_second", samples_per_second},
                         {"user_cpu_seconds", times.user_seconds},
                         {"system_cpu_seconds", times.system_seconds},
                         {"peak_rss_bytes", peak_rss_bytes()},
                         {"per_class_accuracy", test_json["per_class_accuracy"]},
                         {"confusion", test.confusion},
                         {"epoch_records", epochs},
                         {"job_dir", fs::relative(dir, r.out).string()}};
  write_file_atomic(r.out / "summary.json", summary.dump(2) + "\n");
  std::ostringstream md;
  md << "# pnn train: " << r.model << " on " << r.dataset << "\n\n"
     << "| model | scheduler | test accuracy | test loss | epochs | wall time |\n"
     << "|---|---|---|---|---|---|\n"
     << "| " << r.model << " | " << r.scheduler << " | " << fixed(test.accuracy, 4) << " | "
     << fixed(test.loss, 4) << " | " << r.epochs << " | " << fixed(wall, 1) << " s |\n\n"
     << "Per-class test accuracy:\n\n| class | accuracy |\n|---|---|\n";
  auto per_class = test.per_class_accuracy();
  for (size_t c = 0; c < per_class.size(); ++c)
    md << "| " << data.test->classes[c] << " | " << fixed(per_class[c], 4) << " |\n";
  write_file_atomic(r.out / "summary.md", md.str());
  write_file_atomic(r.out / "cpu.csv", cpu.csv());

  std::printf("test accuracy: %.4f (loss %.4f) on %lld test images\n", test.accuracy, test.loss,
              static_cast<long long>(test.samples));
  std::printf("wall time %.1f s (training %.1f s, %.0f steps/s), mean CPU utilisation %.0f%%, "
              "CPU user %.1f s, system %.1f s\n",
              wall, train_seconds, steps_run / std::max(train_seconds, 1e-9),
              100 * cpu.mean_utilization(), times.user_seconds, times.system_seconds);
  std::printf("results: %s (summary.json, summary.md, cpu.csv; job files in %s)\n", r.out.c_str(),
              dir.c_str());
  return 0;
}

} // namespace pnn::runtime
