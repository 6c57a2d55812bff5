#include <pnn/actors/training_worker.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/error.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/system.hpp>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>

#include <unistd.h>

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
  uint64_t generation = 0; // of the running job: replies for an older one are dropped
  // A remote job with checkpoints: written to a local scratch folder, then sent to
  // the sink for the coordinator's folder.
  std::string remote_out_dir;
  fs::path scratch;
  // Distributed SGD (holder set):
  caf::actor holder;
  uint64_t layout = 0;
  uint64_t version = 0;       // the holder's version last pulled
  std::vector<char> snapshot; // parameters at the last pull or push
  int64_t pushed_at = 0;      // steps_done at the last push (or pull)
  int32_t in_flight = 0;      // pushes not yet answered
  bool pulling = false;       // the next slice waits for a pull's answer (the first)
  bool pull_pending = false;  // a pull is on its way
  std::vector<char> pull_base; // the snapshot when that pull was sent
  bool blocked = false;       // the next slice waits for a push slot
  bool finishing = false;     // done training; waits for the last pushes' answers
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
      r.samples = d.job->samples_done();
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
    if (!d.scratch.empty()) {
      std::error_code ec;
      fs::remove_all(d.scratch, ec);
      d.scratch.clear();
    }
    d.job.reset();
    d.data = {};
    d.holder = nullptr;
    d.snapshot = {};
    ++d.generation;
  };
  // The job trained its last batch: its records go out (or into the result) and
  // the promise is delivered.
  auto complete = [self, options, finish] {
    auto& d = *self->state.d;
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
  };
  auto holder_timeout = [self] {
    auto seconds = std::max(0.001, self->state.d->spec.holder_timeout);
    return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  };
  auto holder_failure = [self](const std::string& what, const caf::error& e) {
    auto& d = *self->state.d;
    if (e == caf::sec::request_timeout)
      return "parameter holder did not answer a " + what + " within "
             + std::to_string(d.spec.holder_timeout) + " s";
    return "parameter holder: " + what + " failed: " + self->system().render(e);
  };
  // Decides what follows a slice or a pull (`wake` false) or a push's answer (`wake`
  // true): the next slice, or waiting for a pull, for a push slot, or at the end for
  // the last pushes. Exactly one slice is ever scheduled.
  auto proceed = [self, complete](bool wake) {
    auto& d = *self->state.d;
    if (!d.job || d.pulling)
      return;
    if (d.finishing) {
      if (d.in_flight == 0)
        complete();
      return;
    }
    if (d.in_flight >= std::max(1, d.spec.max_pushes)) {
      d.blocked = true;
      return;
    }
    if (wake && !d.blocked)
      return; // a slice is already on its way
    d.blocked = false;
    self->send(self, slice_atom::value);
  };
  // Sends the update since the last push/pull (current parameters minus the
  // snapshot) and makes the current parameters the snapshot.
  auto push = [self, holder_timeout, holder_failure, finish, proceed] {
    auto& d = *self->state.d;
    if (d.job->steps_done() == d.pushed_at)
      return;
    auto current = parameter_bytes(*d.job->model());
    param_blob update;
    update.version = d.version;
    update.layout = d.layout;
    update.count = current.size() / sizeof(float);
    update.bytes.resize(current.size());
    auto* delta = reinterpret_cast<float*>(update.bytes.data());
    const auto* now = reinterpret_cast<const float*>(current.data());
    const auto* before = reinterpret_cast<const float*>(d.snapshot.data());
    for (uint64_t i = 0; i < update.count; ++i)
      delta[i] = now[i] - before[i];
    d.snapshot = std::move(current);
    d.pushed_at = d.job->steps_done();
    ++d.in_flight;
    ++d.result.pushes;
    const auto gen = d.generation;
    self->request(d.holder, holder_timeout(), push_atom::value, std::move(update))
      .then(
        [=](uint64_t) {
          auto& st = *self->state.d;
          if (st.generation != gen)
            return;
          --st.in_flight;
          proceed(true);
        },
        [=](caf::error& e) {
          auto& st = *self->state.d;
          if (st.generation != gen)
            return;
          --st.in_flight;
          if (e.category() != error_category) {
            // No answer in time, or the holder is gone: this worker cannot go on.
            finish(false, holder_failure("push", e));
            return;
          }
          // The holder refused this update (it counts it too); the next pull
          // brings this worker back to the holder's parameters.
          ++st.result.rejected_pushes;
          proceed(true);
        });
  };
  // Fetches the holder's parameters. The first pull (`wait`) replaces the model's
  // parameters and the first slice follows the answer. Later pulls do not stop
  // training: the answer is merged when it arrives (between slices), keeping the
  // steps made meanwhile. With `base` the snapshot when the pull was sent (just
  // after a push, so the holder's answer includes everything pushed up to then),
  // both the parameters and the snapshot move by (pulled - base): the local
  // progress since the request stays, and the next push still sends exactly what
  // was not pushed yet.
  auto pull = [self, holder_timeout, holder_failure, finish, proceed](bool wait) {
    auto& d = *self->state.d;
    if (d.pull_pending)
      return; // one pull at a time; the next pull step asks again
    d.pulling = wait;
    d.pull_pending = true;
    d.pull_base = wait ? std::vector<char>{} : d.snapshot;
    const auto gen = d.generation;
    self->request(d.holder, holder_timeout(), pull_atom::value)
      .then(
        [=](param_blob& blob) {
          auto& st = *self->state.d;
          if (st.generation != gen)
            return;
          st.pull_pending = false;
          auto& model = *st.job->model();
          const auto floats = static_cast<uint64_t>(parameter_floats(model));
          if (blob.layout != st.layout || blob.count != floats) {
            finish(false, "parameter holder: its parameters (layout " + std::to_string(blob.layout)
                            + ", " + std::to_string(blob.count) + " values) do not fit model "
                            + st.spec.model + " (layout " + std::to_string(st.layout) + ", "
                            + std::to_string(floats) + " values)");
            return;
          }
          auto why = check_floats(blob.bytes, blob.count);
          if (!why.empty()) {
            finish(false, "parameter holder: pulled parameters: " + why);
            return;
          }
          try {
            if (st.pulling) {
              load_parameter_bytes(model, blob.bytes);
              st.snapshot = std::move(blob.bytes);
              st.pushed_at = st.job->steps_done();
            } else {
              auto current = parameter_bytes(model);
              auto* cur = reinterpret_cast<float*>(current.data());
              auto* snap = reinterpret_cast<float*>(st.snapshot.data());
              const auto* pulled = reinterpret_cast<const float*>(blob.bytes.data());
              const auto* base = reinterpret_cast<const float*>(st.pull_base.data());
              for (uint64_t i = 0; i < blob.count; ++i) {
                const float offset = pulled[i] - base[i];
                cur[i] += offset;
                snap[i] += offset;
              }
              load_parameter_bytes(model, current);
              st.pull_base.clear();
            }
          } catch (const std::exception& e) {
            finish(false, e.what());
            return;
          }
          st.version = blob.version;
          ++st.result.pulls;
          if (st.pulling) {
            st.pulling = false;
            proceed(false);
          }
        },
        [=](caf::error& e) {
          auto& st = *self->state.d;
          if (st.generation != gen)
            return;
          finish(false, holder_failure("pull", e));
        });
  };
  // Starts a job; `holder` set: as a distributed SGD worker.
  auto start = [self, sink, options, finish, pull](const job_spec& spec,
                                                   caf::actor holder) -> caf::result<job_result> {
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
    d.remote_out_dir.clear();
    d.scratch.clear();
    if (options.remote) {
      // The coordinator's folder is not ours: records come back in the result, and
      // checkpoints (when asked for) go to a scratch folder here and then to the
      // sink, which writes them into the coordinator's folder.
      d.spec.out_dir.clear();
      d.spec.resume = false;
      const bool checkpoints = spec.checkpoint_every > 0 && !spec.out_dir.empty() && sink;
      const bool resume = spec.resume && !spec.checkpoint.empty();
      if (checkpoints || resume) {
        static std::atomic<uint64_t> next{0};
        d.remote_out_dir = checkpoints ? spec.out_dir : "";
        d.scratch = fs::temp_directory_path()
                    / ("pnn-node-" + std::to_string(::getpid()) + "-" + std::to_string(next++));
        d.spec.out_dir = d.scratch.string();
      }
      if (!checkpoints)
        d.spec.checkpoint_every = 0;
      if (resume) {
        // The coordinator sent the job's latest checkpoint: continue from it.
        try {
          write_file_atomic(d.scratch / "latest.pt",
                            std::string(spec.checkpoint.begin(), spec.checkpoint.end()));
          d.spec.resume = true;
        } catch (const std::exception&) {
          // No scratch space: the job starts afresh (result.resumed_from_epoch says so).
        }
      }
      d.spec.checkpoint.clear();
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
    d.holder = holder;
    d.in_flight = 0;
    d.pulling = d.blocked = d.finishing = d.pull_pending = false;
    d.pull_base.clear();
    d.pushed_at = 0;
    d.version = 0;
    d.snapshot.clear();
    try {
      if (holder && (spec.n_pull < 1 || spec.n_push < 1 || spec.max_pushes < 1))
        throw pnn::error(error_code::invalid_argument,
                         "job " + std::to_string(spec.id)
                           + ": n_pull, n_push and max_pushes must be at least 1");
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
      d.result.clock_zero = wall_clock_seconds() - d.job->elapsed_seconds();
      if (holder)
        d.layout = layout_hash(*d.job->model());
    } catch (const std::exception& e) {
      std::string msg = e.what();
      finish(false, msg.substr(0, msg.find('\n')));
      return promise;
    }
    if (holder)
      pull(true); // the first slice follows the holder's parameters
    else
      self->send(self, slice_atom::value);
    return promise;
  };
  return {
    [=](run_atom, const job_spec& spec) -> caf::result<job_result> {
      return start(spec, nullptr);
    },
    [=](run_atom, const job_spec& spec, caf::actor holder) -> caf::result<job_result> {
      if (!holder) {
        job_result r;
        r.id = spec.id;
        r.error = "no parameter holder given";
        return r;
      }
      return start(spec, std::move(holder));
    },
    [=](slice_atom) {
      auto& d = *self->state.d;
      if (!d.job || d.pulling || d.finishing)
        return; // cancelled meanwhile (or a stray slice)
      int64_t max_batches = options.batches_per_slice;
      if (d.holder) {
        // Stop at the next pull or push step.
        const int64_t steps = d.job->steps_done();
        max_batches = std::min<int64_t>(max_batches, d.spec.n_push - steps % d.spec.n_push);
        max_batches = std::min<int64_t>(max_batches, d.spec.n_pull - steps % d.spec.n_pull);
      }
      bool done = false;
      int64_t epoch_before = d.job->epochs_done();
      try {
        done = d.job->run(max_batches);
      } catch (const std::exception& e) {
        std::string msg = e.what();
        finish(false, msg.substr(0, msg.find('\n')));
        return;
      }
      double elapsed = d.job->elapsed_seconds();
      bool epoch_ended = d.job->epochs_done() != epoch_before;
      if (epoch_ended && !d.remote_out_dir.empty()
          && d.job->epochs_done() % d.spec.checkpoint_every == 0) {
        // The job wrote its checkpoint into the scratch folder: send it home.
        job_checkpoint c;
        c.id = d.spec.id;
        c.out_dir = d.remote_out_dir;
        c.epoch = d.job->epochs_done();
        try {
          const auto text = read_text_file(d.scratch / "latest.pt");
          c.bytes.assign(text.begin(), text.end());
          std::error_code ec;
          fs::remove(d.scratch / ("epoch_" + std::to_string(c.epoch) + ".pt"), ec);
        } catch (const std::exception& e) {
          finish(false, e.what());
          return;
        }
        caf::anon_send(sink, checkpoint_atom::value, std::move(c));
      }
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
      if (!d.holder) {
        if (done)
          complete();
        else
          self->send(self, slice_atom::value);
        return;
      }
      const int64_t steps = d.job->steps_done();
      const bool pull_due = !done && steps % d.spec.n_pull == 0;
      // Before a pull, what was learnt since the last push goes out (the holder
      // handles one sender's messages in order, so the pull's answer includes it).
      if (done || pull_due || steps % d.spec.n_push == 0)
        push();
      if (!d.job)
        return;
      if (done)
        d.finishing = true;
      else if (pull_due)
        pull(false);
      proceed(false);
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
