#include "replica_run.hpp"

#include <pnn/experiments/distributed.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/random.hpp>
#include <pnn/training/records.hpp>
#include <pnn/system.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace pnn::detail {

std::string worker_name(size_t i) {
  return "worker" + std::to_string(i);
}

training::dataset_pair replica_data(const data_group& d, const replica_group& r) {
  training::dataset_pair data;
  if (r.train_data) {
    data.train = r.train_data;
    data.test = r.test_data;
    return data;
  }
  data = training::shared_dataset(d.dataset, d.data_dir, d.subset);
  if (r.test_data)
    data.test = r.test_data;
  return data;
}

std::string replica_dataset_name(const data_group& d, const replica_group& r) {
  return r.train_data && !r.train_data->name.empty() ? r.train_data->name : d.dataset;
}

job_spec worker_spec(const data_group& d, const optimizer_group& opt, const schedule_group& s,
                     const replica_group& r, const std::string& model, const std::string& dataset,
                     int32_t i, int32_t n) {
  job_spec spec;
  spec.id = static_cast<uint32_t>(i);
  spec.model = model;
  spec.scheduler = r.scheduler;
  spec.optimizer = opt.optimizer;
  spec.lr = opt.lr;
  spec.dataset = dataset;
  spec.data_dir = d.data_dir;
  spec.subset = d.subset;
  spec.shards = n;
  spec.shard = i;
  spec.split_seed = r.shard_seed;
  spec.seed = i == 0 ? s.seed : training::derive_seed(s.seed, static_cast<uint64_t>(i));
  spec.epochs = s.epochs;
  spec.batch_size = s.batch_size;
  spec.threads = r.threads_per_worker;
  return spec;
}

training::transform_options eval_transform(const job_spec& spec, const replica_group& r) {
  auto opts = job_options_from(spec);
  if (r.customize)
    r.customize(spec, opts);
  return opts.eval_transform;
}

void set_throughput(replica_report& r, const std::vector<const hogwild_worker_report*>& workers) {
  double t_end = 0;
  int64_t samples = 0;
  double loss_sum = 0;
  for (const auto* w : workers) {
    for (const auto& s : w->steps)
      t_end = std::max(t_end, s.time);
    samples += w->samples;
    loss_sum += w->result.train_loss * static_cast<double>(w->samples);
  }
  r.train_seconds = t_end;
  r.samples_per_second = static_cast<double>(samples) / std::max(t_end, 1e-9);
  r.final_train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, samples));
}

void test_model(replica_report& r, models::Network& model, const job_spec& first,
                const replica_group& g, const training::dataset_ptr& test,
                const std::filesystem::path& out, int32_t cores) {
  r.test_accuracy = std::numeric_limits<double>::quiet_NaN();
  r.test_loss = std::numeric_limits<double>::quiet_NaN();
  if (!g.test || !test)
    return;
  training::use_intra_op_threads(cores);
  model_tester tester{test, out, g.test_batch_size};
  tester.transform() = eval_transform(first, g);
  auto e = tester(model);
  r.test_accuracy = e.accuracy;
  r.test_loss = e.loss;
  r.confusion = e.confusion;
}

std::vector<training::tensorboard::hparam>
replica_hparams(const optimizer_group& opt, const schedule_group& s, const replica_group& g,
                const std::string& model, int32_t workers,
                std::vector<training::tensorboard::hparam> more) {
  std::vector<training::tensorboard::hparam> h{
    {"model", model},
    {"optimizer", opt.optimizer},
    {"lr", opt.lr},
    {"scheduler", g.scheduler},
    {"batch_size", static_cast<double>(s.batch_size)},
    {"epochs", static_cast<double>(s.epochs)},
    {"workers", static_cast<double>(workers)}};
  h.insert(h.end(), more.begin(), more.end());
  return h;
}

void write_events(const std::filesystem::path& out, const replica_report& r,
                  const std::vector<const hogwild_worker_report*>& workers,
                  const std::vector<training::tensorboard::hparam>& hparams, bool ok) {
  namespace tb = training::tensorboard;
  try {
    const double zero = r.train_started_at;
    double end = zero;
    int64_t steps = 0;
    for (size_t i = 0; i < workers.size(); ++i) {
      tb::event_file f{zero};
      for (const auto& s : workers[i]->steps) {
        f.scalar("train/loss", s.step, zero + s.time, s.loss);
        f.scalar("train/lr", s.step, zero + s.time, s.lr);
        end = std::max(end, zero + s.time);
      }
      steps += static_cast<int64_t>(workers[i]->steps.size());
      f.write(out / "tb" / worker_name(i));
    }
    std::vector<std::pair<std::string, double>> figures{
      {"train/samples_per_second", r.samples_per_second},
      {"train/final_loss", r.final_train_loss}};
    if (std::isfinite(r.test_accuracy))
      figures.insert(figures.begin(),
                     {{"test/accuracy", r.test_accuracy}, {"test/loss", r.test_loss}});
    std::vector<tb::hparam_info> infos;
    for (const auto& h : hparams)
      infos.push_back({h.name, {h.value}});
    std::vector<std::string> tags;
    for (const auto& [tag, value] : figures)
      tags.push_back(tag);
    tb::event_file f{zero};
    f.experiment(infos, tags, zero);
    f.session_start(hparams, "", zero);
    for (const auto& [tag, value] : figures)
      f.scalar(tag, steps, end, value);
    f.session_end(ok, end);
    f.write(out / "tb");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn: no TensorBoard events: %s\n", e.what());
  }
}

void save_model(const models::Network& model, const std::filesystem::path& file) {
  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  model.save(archive);
  archive.save_to(bytes);
  pnn::write_file_atomic(file, bytes.str());
}

void set_spending(replica_report& r, const run_meter& meter) {
  const auto spent = meter.read();
  r.wall_seconds = spent.wall_seconds;
  r.user_cpu_seconds = spent.user_cpu_seconds;
  r.system_cpu_seconds = spent.system_cpu_seconds;
  r.peak_rss_bytes = spent.peak_rss_bytes;
}

run_summary shared_summary(const char* command, const replica_report& r, const optimizer_group& opt,
                           const schedule_group& s, const replica_group& g,
                           const run_facts& facts) {
  run_summary out;
  out.command = command;
  out.dataset = facts.dataset;
  out.wall_seconds = r.wall_seconds;
  out.cpu_utilization_mean = r.cpu_utilization_mean;
  out.cores = facts.cores;
  out.test_accuracy = r.test_accuracy;
  out.samples_per_second = r.samples_per_second;
  out.final_train_loss = r.final_train_loss;
  out.per_class_accuracy.emplace();
  if (!r.confusion.empty()) {
    training::evaluation e;
    e.confusion = r.confusion;
    out.per_class_accuracy = e.per_class_accuracy();
  }
  out.more = {{"test_loss", training::number_or_null(r.test_loss)},
              {"train_seconds", r.train_seconds},
              {"threads_per_worker", g.threads_per_worker},
              {"train_samples", facts.train_samples},
              {"test_samples", facts.test_samples},
              {"model", facts.model},
              {"parameters", facts.parameters},
              {"optimizer", opt.optimizer},
              {"lr", opt.lr},
              {"scheduler", g.scheduler},
              {"epochs", s.epochs},
              {"batch_size", s.batch_size},
              {"seed", s.seed},
              {"shard_seed", g.shard_seed},
              {"user_cpu_seconds", r.user_cpu_seconds},
              {"system_cpu_seconds", r.system_cpu_seconds},
              {"peak_rss_bytes", r.peak_rss_bytes},
              {"confusion", r.confusion}};
  return out;
}

} // namespace pnn::detail
