#include <pnn/actors/training_worker.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/error.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/system.hpp>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cmath>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

struct worker_state::impl {
  std::unique_ptr<training_job> job;
  job_spec spec;
  caf::typed_response_promise<job_result> promise;
  job_result result;
  dataset_pair data;
  std::vector<int64_t> validation;
  double loss_sum = 0; // since the last progress event
  int64_t loss_count = 0;
  double last_progress = 0;
};

worker_state::worker_state() : d(std::make_unique<impl>()) {
}
worker_state::~worker_state() = default;

job_options job_options_from(const job_spec& s) {
  job_options o;
  o.model = s.model;
  o.optimizer = optimizer_options::parse(s.optimizer, s.lr);
  o.schedule = schedule_options::parse(s.scheduler);
  o.epochs = s.epochs;
  o.batch_size = s.batch_size;
  o.seed = s.seed;
  o.threads = std::max(1, s.threads);
  o.checkpoint_every = s.checkpoint_every;
  o.checkpoint_dir = s.out_dir;
  o.train_transform = default_transform(s.dataset, true);
  o.eval_transform = default_transform(s.dataset, false);
  return o;
}

worker_actor::behavior_type training_worker(worker_actor::stateful_pointer<worker_state> self,
                                            caf::actor sink, worker_options options) {
  auto finish = [self](bool ok, const std::string& error) {
    auto& d = *self->state.d;
    auto& r = d.result;
    r.ok = ok;
    r.error = error;
    r.finished_at = wall_clock_seconds();
    if (d.job) {
      r.epochs_done = d.job->epochs_done();
      for (const auto& e : d.job->epoch_records()) {
        r.epoch_train_loss.push_back(e.train_loss);
        r.epoch_val_loss.push_back(e.val_loss);
        r.epoch_val_accuracy.push_back(e.val_accuracy);
      }
      if (!d.job->epoch_records().empty()) {
        const auto& last = d.job->epoch_records().back();
        r.train_loss = last.train_loss;
        r.val_loss = last.val_loss;
        r.val_accuracy = last.val_accuracy;
      }
    }
    if (d.promise.pending())
      d.promise.deliver(r);
    d.job.reset();
    d.data = {};
  };
  return {
    [=](run_atom, const job_spec& spec) -> caf::result<job_result> {
      auto& d = *self->state.d;
      if (d.job) {
        // Busy: refuse at once so the dispatcher can place the job elsewhere.
        job_result busy;
        busy.id = spec.id;
        busy.ok = false;
        busy.error = "worker busy";
        return busy;
      }
      d.spec = spec;
      if (options.remote) {
        // The coordinator's folder is not ours: nothing is written on this host.
        d.spec.out_dir.clear();
        d.spec.checkpoint_every = 0;
        d.spec.resume = false;
      }
      if (!options.data_dir.empty())
        d.spec.data_dir = options.data_dir;
      d.promise = self->make_response_promise<job_result>();
      auto promise = d.promise;
      d.result = job_result{};
      d.result.id = spec.id;
      d.result.model = spec.model;
      d.result.scheduler = spec.scheduler;
      d.result.fold = spec.fold;
      d.result.host = options.host;
      d.result.slot = options.slot;
      d.result.started_at = wall_clock_seconds();
      d.result.thread_times.push_back(d.result.started_at);
      d.result.thread_counts.push_back(std::max(1, spec.threads));
      d.loss_sum = 0;
      d.loss_count = 0;
      d.last_progress = 0;
      try {
        if (options.train_data)
          d.data.train = options.train_data;
        else
          d.data = shared_dataset(d.spec.dataset, d.spec.data_dir, d.spec.subset);
        std::vector<int64_t> train, validation;
        const int64_t n = d.data.train->size();
        if (d.spec.shards > 0) {
          if (d.spec.shard < 0 || d.spec.shard >= d.spec.shards)
            throw pnn::error(error_code::invalid_argument,
                             "job " + std::to_string(d.spec.id) + ": shard "
                               + std::to_string(d.spec.shard) + " outside 0.."
                               + std::to_string(d.spec.shards - 1));
          train = d.spec.shards == 1 ? all_indices(n)
                                   : shard_indices(n, d.spec.shards, d.spec.shard, d.spec.split_seed);
        } else {
          auto fold = make_fold(n, d.spec.folds, d.spec.fold, d.spec.split_seed);
          train = std::move(fold.train);
          validation = std::move(fold.validation);
        }
        auto o = job_options_from(d.spec);
        if (options.customize)
          options.customize(d.spec, o);
        if (!d.spec.out_dir.empty())
          ensure_directory(d.spec.out_dir);
        d.job = std::make_unique<training_job>(o, d.data.train, std::move(train),
                                               std::move(validation));
        if (d.spec.resume && !d.spec.out_dir.empty())
          if (auto latest = find_latest_checkpoint(d.spec.out_dir)) {
            d.job->load_checkpoint(*latest);
            d.result.resumed_from_epoch = d.job->epochs_done();
          }
        d.job->on_step = [self](const step_record& s) {
          auto& st = *self->state.d;
          st.loss_sum += s.loss;
          ++st.loss_count;
        };
        if (options.prepare)
          options.prepare(d.spec, *d.job);
      } catch (const std::exception& e) {
        std::string msg = e.what();
        finish(false, msg.substr(0, msg.find('\n')));
        return promise;
      }
      self->send(self, slice_atom::value);
      return promise;
    },
    [=](slice_atom) {
      auto& d = *self->state.d;
      if (!d.job)
        return; // cancelled meanwhile
      bool done = false;
      int64_t epoch_before = d.job->epochs_done();
      try {
        done = d.job->run(options.batches_per_slice);
      } catch (const std::exception& e) {
        std::string msg = e.what();
        finish(false, msg.substr(0, msg.find('\n')));
        return;
      }
      double elapsed = d.job->elapsed_seconds();
      bool epoch_ended = d.job->epochs_done() != epoch_before;
      if (sink && d.loss_count > 0
          && (epoch_ended || done || elapsed - d.last_progress >= options.progress_interval)) {
        job_progress p;
        p.id = d.spec.id;
        p.slot = options.slot;
        p.epoch = std::min(d.job->epochs_done() + 1, d.spec.epochs);
        p.epochs = d.spec.epochs;
        p.batch = epoch_ended ? d.job->batches_per_epoch() : d.job->batch_in_epoch();
        p.batches = d.job->batches_per_epoch();
        p.loss = d.loss_sum / static_cast<double>(d.loss_count);
        p.lr = d.job->schedule().lr();
        p.elapsed = elapsed;
        p.threads = d.job->threads();
        caf::anon_send(sink, progress_atom::value, p);
        d.loss_sum = 0;
        d.loss_count = 0;
        d.last_progress = elapsed;
      }
      if (!done) {
        self->send(self, slice_atom::value);
        return;
      }
      try {
        const auto& val = d.job->last_validation();
        if (options.remote) {
          for (auto& [name, content] : job_record_files(*d.job, val ? &*val : nullptr,
                                                        "validation", d.data.train->classes)) {
            d.result.file_names.push_back(name);
            d.result.file_contents.push_back(std::move(content));
          }
        } else if (!d.spec.out_dir.empty()) {
          write_job_records(d.spec.out_dir, *d.job, val ? &*val : nullptr, "validation",
                            d.data.train->classes);
        }
      } catch (const std::exception& e) {
        finish(false, e.what());
        return;
      }
      finish(true, "");
    },
    [=](threads_atom, int32_t n) {
      auto& d = *self->state.d;
      if (!d.job || n < 1 || n == d.job->threads())
        return;
      d.job->set_threads(n);
      d.result.thread_times.push_back(wall_clock_seconds());
      d.result.thread_counts.push_back(n);
    },
    [=](cancel_atom) {
      if (self->state.d->job)
        finish(false, "cancelled");
    },
  };
}

worker_actor spawn_worker(caf::actor_system& sys, caf::actor sink, worker_options options) {
  return sys.spawn(training_worker, std::move(sink), std::move(options));
}

} // namespace pnn
