// A pipeline composed by hand from pnn's actors, with an actor of our own in it:
// an early stopper that sits between the training workers and the metric collector,
// watches every job's loss, and cancels a job whose epoch loss has stopped falling.
//
//   training_worker x N --progress--> early_stopper --forward--> metric_collector
//          ^                               |
//          +----------- cancel ------------+
//   fold_dispatcher --run--> workers, results --> metric_collector
//
// The experiment: LeNet5 on a synthetic dataset, 2 folds, trained twice: once with a
// sensible optimizer (Adam 1e-3) and once with plain SGD at a learning rate far too
// low (1e-5), whose loss stays at ~ln(10). The stopper should end the second pair
// early and let the first pair train on. Uses only pnn's installed public headers (the
// out-of-tree check in tests/install builds this file against an installed pnn).
//
//   ./build/examples/custom_pipeline [--epochs N] [--patience P]
// Exit code 0 when every job ended and each too-low-lr job was stopped early.

#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/actors/kfold.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/training/system.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace {

/// The early stopper's own message: "this worker runs in slot N".
using slot_atom = caf::atom_constant<caf::atom("slot")>;

struct stopper_state {
  struct job {
    double epoch_sum = 0; ///< progress losses seen in the current epoch
    int epoch_events = 0;
    double best = INFINITY;
    int stale_epochs = 0; ///< epochs since the loss last fell by min_gain
    bool stopped = false;
  };
  std::map<uint32_t, job> jobs;
  std::map<int32_t, pnn::worker_actor> workers; ///< by slot
  std::vector<std::pair<uint32_t, int64_t>> stopped; ///< job id, epoch
};

/// Forwards every event to `next`; ends a job whose epoch loss has not fallen by a
/// relative `min_gain` for `patience` epochs. Asked with done_atom, replies the jobs
/// it stopped (id, epoch) as two vectors.
caf::behavior early_stopper(caf::stateful_actor<stopper_state>* self, caf::actor next,
                            int patience, double min_gain) {
  return {
    [=](slot_atom, int32_t slot, pnn::worker_actor w) { self->state.workers[slot] = w; },
    [=](pnn::progress_atom, const pnn::job_progress& p) {
      self->send(next, pnn::progress_atom::value, p);
      auto& j = self->state.jobs[p.id];
      if (j.stopped)
        return;
      j.epoch_sum += p.loss;
      ++j.epoch_events;
      if (p.batch < p.batches)
        return; // the epoch is not over
      const double loss = j.epoch_sum / j.epoch_events;
      j.epoch_sum = 0;
      j.epoch_events = 0;
      if (std::isfinite(loss) && loss < j.best * (1 - min_gain)) {
        j.best = loss;
        j.stale_epochs = 0;
        return;
      }
      if (++j.stale_epochs < patience || p.epoch >= p.epochs)
        return;
      auto w = self->state.workers.find(p.slot);
      if (w == self->state.workers.end())
        return;
      j.stopped = true;
      self->state.stopped.emplace_back(p.id, p.epoch);
      std::printf("early stopper: job %u stopped (epoch loss %.4f, best %.4f)\n", p.id, loss,
                  j.best);
      self->send(w->second, pnn::cancel_atom::value);
    },
    [=](pnn::checkpoint_atom, pnn::job_checkpoint& c) {
      self->send(next, pnn::checkpoint_atom::value, std::move(c));
    },
    [=](pnn::done_atom) {
      std::vector<uint32_t> ids;
      std::vector<int64_t> epochs;
      for (auto& [id, epoch] : self->state.stopped) {
        ids.push_back(id);
        epochs.push_back(epoch);
      }
      return caf::make_message(ids, epochs);
    },
  };
}

} // namespace

int main(int argc, char** argv) {
  int64_t epochs = 6;
  int patience = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--epochs") == 0)
      epochs = std::atoll(argv[i + 1]);
    else if (std::strcmp(argv[i], "--patience") == 0)
      patience = std::atoi(argv[i + 1]);
  }
  if (epochs < 3 || patience < 1) {
    std::fprintf(stderr, "custom_pipeline: expected --epochs >= 3 and --patience >= 1\n");
    return 2;
  }
  const int cores = pnn::training::available_cores();

  // The jobs: K-fold's own expansion, then a copy of each with a too-low lr.
  pnn::kfold_options o;
  o.dataset = "synthetic:train=600,test=60";
  o.models = {"lenet5"};
  o.schedulers = {"none"};
  o.folds = 2;
  o.epochs = epochs;
  auto jobs = pnn::expand_jobs(o);
  const size_t good = jobs.size();
  for (size_t i = 0; i < good; ++i) {
    auto bad = jobs[i];
    bad.id = static_cast<uint32_t>(good + i);
    bad.optimizer = "sgd";
    bad.lr = 1e-5;
    jobs.push_back(bad);
  }
  for (auto& j : jobs)
    j.out_dir.clear(); // this example writes no files

  caf::actor_system_config cfg;
  pnn::configure_actor_system(cfg, static_cast<size_t>(cores));
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  pnn::collector_options co;
  co.progress = "plain";
  co.total_jobs = jobs.size();
  for (const auto& j : jobs)
    co.labels[j.id] = "lenet5 " + j.optimizer + " fold" + std::to_string(j.fold);
  auto collector = sys.spawn(pnn::metric_collector, co);
  auto stopper = sys.spawn(early_stopper, caf::actor_cast<caf::actor>(collector), patience, 0.01);

  pnn::dispatcher_options dopt;
  dopt.cores = cores;
  auto dispatcher = sys.spawn(pnn::fold_dispatcher, caf::actor_cast<caf::actor>(collector), dopt);
  std::vector<pnn::worker_actor> workers;
  for (int32_t slot = 0; slot < cores; ++slot) {
    pnn::worker_options wo;
    wo.slot = slot;
    auto w = pnn::spawn_worker(sys, stopper, wo); // progress goes through the stopper
    self->send(stopper, slot_atom::value, slot, w);
    self->send(dispatcher, pnn::add_atom::value, w);
    workers.push_back(w);
  }

  std::vector<pnn::job_result> results;
  self->request(dispatcher, caf::infinite, pnn::run_atom::value, jobs)
    .receive([&](std::vector<pnn::job_result>& r) { results = std::move(r); },
             [&](caf::error& e) { std::fprintf(stderr, "run failed: %s\n", sys.render(e).c_str()); });
  std::vector<uint32_t> stopped_ids;
  std::vector<int64_t> stopped_epochs;
  self->request(stopper, caf::infinite, pnn::done_atom::value)
    .receive([&](std::vector<uint32_t>& ids, std::vector<int64_t>& at) {
               stopped_ids = ids;
               stopped_epochs = at;
             },
             [&](caf::error&) {});
  self->request(collector, caf::infinite, pnn::done_atom::value).receive([](double) {}, [](caf::error&) {});
  for (auto& w : workers)
    self->send_exit(w, caf::exit_reason::user_shutdown);
  for (auto a : {caf::actor_cast<caf::actor>(dispatcher), caf::actor_cast<caf::actor>(collector), stopper})
    self->send_exit(a, caf::exit_reason::user_shutdown);

  std::printf("\n%-4s %-13s %-5s %-10s %s\n", "job", "optimizer", "fold", "epochs", "outcome");
  bool ok = results.size() == jobs.size();
  for (const auto& r : results) {
    const auto& spec = jobs[r.id];
    const bool stopped = std::find(stopped_ids.begin(), stopped_ids.end(), r.id) != stopped_ids.end();
    std::printf("%-4u %-13s %-5d %lld/%-8lld %s\n", r.id,
                (spec.optimizer + " " + std::to_string(spec.lr).substr(0, 7)).c_str(), r.fold,
                static_cast<long long>(r.epochs_done), static_cast<long long>(spec.epochs),
                r.ok ? ("val accuracy " + std::to_string(r.val_accuracy).substr(0, 5)).c_str()
                     : (stopped ? "stopped early" : ("failed: " + r.error).c_str()));
    // Every too-low-lr job must have been stopped before its last epoch.
    if (spec.optimizer == "sgd" && (!stopped || r.epochs_done >= spec.epochs))
      ok = false;
    if (!r.ok && !stopped)
      ok = false;
  }
  std::printf("%zu job(s), %zu stopped early by the pipeline's own actor: %s\n", results.size(),
              stopped_ids.size(), ok ? "as expected" : "NOT as expected");
  return ok ? 0 : 1;
}
