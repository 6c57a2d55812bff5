// A pipeline composed by hand from pnn's actors, with an actor of our own in it:
// an early stopper that sits between the training workers and the metric collector,
// watches every job's loss, and has the dispatcher cancel a job whose epoch loss has
// stopped falling.
//
//   training_worker x N --progress--> early_stopper --forward--> metric_collector
//   fold_dispatcher --run--> workers, results --> metric_collector
//          ^                               |
//          +------- cancel job id ---------+
//
// The stopper implements pnn's event-sink interface (pnn::event_sink_actor), so the
// workers take its handle where they would take the collector's; every handle is
// typed, and a message the receiver does not understand does not compile.
//
// The experiment: LeNet5 on a synthetic dataset, 2 folds, trained twice: once with a
// sensible optimizer (Adam 1e-3) and once with plain SGD at a learning rate far too
// low (1e-5), whose loss stays at ~ln(10). The stopper should end the second pair
// early and let the first pair train on. Uses only pnn's installed public headers (the
// out-of-tree check in tests/install builds this file against an installed pnn).
//
//   ./build/examples/custom_pipeline [--epochs N] [--patience P]
// Exit code 0 when every job ended and each too-low-lr job was stopped early.

#include <pnn/actors/actor_group.hpp>
#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/system.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

/// The early stopper: an event sink (progress, results, checkpoints) that also
/// answers, at the end, the jobs it stopped (ids and epochs).
using stopper_actor = pnn::event_sink_actor::extend<
  caf::replies_to<pnn::done_atom>::with<std::vector<uint32_t>, std::vector<int64_t>>>;

struct stopper_state {
  struct job {
    double epoch_sum = 0; ///< progress losses seen in the current epoch
    int epoch_events = 0;
    double best = INFINITY;
    int stale_epochs = 0; ///< epochs since the loss last fell by min_gain
    bool stopped = false;
  };
  std::map<uint32_t, job> jobs;
  std::vector<uint32_t> stopped_ids;
  std::vector<int64_t> stopped_epochs;
  static inline const char* name = "early_stopper";

  /// True when job p.id's epoch loss has not fallen by a relative `min_gain` for
  /// `patience` epochs (checked at each epoch's last progress event).
  bool should_stop(const pnn::job_progress& p, int patience, double min_gain) {
    auto& j = jobs[p.id];
    if (j.stopped)
      return false;
    j.epoch_sum += p.loss;
    ++j.epoch_events;
    if (p.batch < p.batches)
      return false; // the epoch is not over
    const double loss = j.epoch_sum / j.epoch_events;
    j.epoch_sum = 0;
    j.epoch_events = 0;
    if (std::isfinite(loss) && loss < j.best * (1 - min_gain)) {
      j.best = loss;
      j.stale_epochs = 0;
      return false;
    }
    if (++j.stale_epochs < patience || p.epoch >= p.epochs)
      return false;
    j.stopped = true;
    stopped_ids.push_back(p.id);
    stopped_epochs.push_back(p.epoch);
    std::printf("early stopper: job %u stopped (epoch loss %.4f, best %.4f)\n", p.id, loss, j.best);
    return true;
  }
};

/// Forwards every event to `next`; asks `dispatcher` to cancel a job that stopped
/// learning.
stopper_actor::behavior_type early_stopper(stopper_actor::stateful_pointer<stopper_state> self,
                                           pnn::event_sink_actor next,
                                           pnn::dispatcher_actor dispatcher, int patience,
                                           double min_gain) {
  return {
    [=](pnn::progress_atom, const pnn::job_progress& p) {
      self->send(next, pnn::progress_atom::value, p);
      if (self->state.should_stop(p, patience, min_gain))
        self->send(dispatcher, pnn::cancel_atom::value, p.id);
    },
    [=](pnn::result_atom, const pnn::job_result& r) {
      self->send(next, pnn::result_atom::value, r);
    },
    // A checkpoint is answered (taken or refused, which tells its worker to send
    // all its steps with the next one): the collector's answer goes back.
    [=](pnn::checkpoint_atom, const pnn::job_checkpoint& c) {
      return self->delegate(next, pnn::checkpoint_atom::value, c);
    },
    // Whom each job went to. (The collector behind us trusts what we forward, as
    // it comes from this process: a stopper whose workers ran on other hosts would
    // check, as the collector does, that an event comes from the job's worker.)
    [=](pnn::assign_atom, const pnn::job_spec& j, const pnn::worker_actor& w) {
      self->send(next, pnn::assign_atom::value, j, w);
    },
    [=](pnn::done_atom) {
      return std::make_tuple(self->state.stopped_ids, self->state.stopped_epochs);
    },
  };
}

} // namespace

int main(int argc, char** argv) {
  int64_t epochs = 6;
  int patience = 2;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs per job (at least 3)");
  flag("patience", po::value(&patience)->default_value(patience),
       "epochs without a better validation loss before the stopper ends a job (at least 1)");
  if (int code = pnn::runtime::parse_program_flags(
        "custom_pipeline", "[--epochs N] [--patience N]",
        "A K-fold pipeline built by hand with an early stopper of our own between the workers\n"
        "and the metric collector.",
        flags, argc, argv);
      code >= 0)
    return code;
  if (epochs < 3 || patience < 1) {
    std::fprintf(stderr, "custom_pipeline: expected --epochs >= 3 and --patience >= 1\n");
    return 2;
  }
  const int cores = pnn::available_cores();

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
  pnn::actor_group actors; // ends every actor below when main returns

  pnn::collector_options co;
  co.progress = "plain";
  co.total_jobs = jobs.size();
  for (const auto& j : jobs)
    co.labels[j.id] = "lenet5 " + j.optimizer + " fold" + std::to_string(j.fold);
  auto collector = actors.add(pnn::spawn_collector(sys, co));
  pnn::dispatcher_options dopt;
  dopt.cores = cores;
  auto dispatcher = actors.add(pnn::spawn_dispatcher(sys, collector, dopt));
  auto stopper = actors.add(sys.spawn(early_stopper, collector, dispatcher, patience, 0.01));
  for (int32_t slot = 0; slot < cores; ++slot) {
    pnn::worker_options wo;
    wo.slot = slot;
    // Progress goes through the stopper; results come through the dispatcher.
    self->send(dispatcher, pnn::add_atom::value, actors.add(pnn::spawn_worker(sys, stopper, wo)));
  }

  std::vector<pnn::job_result> results;
  self->request(dispatcher, caf::infinite, pnn::run_atom::value, jobs)
    .receive(
      [&](std::vector<pnn::job_result>& r) { results = std::move(r); },
      [&](caf::error& e) { std::fprintf(stderr, "run failed: %s\n", sys.render(e).c_str()); });
  std::vector<uint32_t> stopped_ids;
  std::vector<int64_t> stopped_epochs;
  self->request(stopper, caf::infinite, pnn::done_atom::value)
    .receive(
      [&](std::vector<uint32_t>& ids, std::vector<int64_t>& at) {
        stopped_ids = ids;
        stopped_epochs = at;
      },
      [&](caf::error&) {});
  self->request(collector, caf::infinite, pnn::done_atom::value)
    .receive([](double) {}, [](caf::error&) {});

  std::printf("\n%-4s %-13s %-5s %-10s %s\n", "job", "optimizer", "fold", "epochs", "outcome");
  bool ok = results.size() == jobs.size();
  for (const auto& r : results) {
    const auto& spec = jobs[r.id];
    const bool stopped =
      std::find(stopped_ids.begin(), stopped_ids.end(), r.id) != stopped_ids.end();
    std::printf("%-4u %-13s %-5d %lld/%-8lld %s\n", r.id,
                (spec.optimizer + " " + std::to_string(spec.lr).substr(0, 7)).c_str(), r.fold,
                static_cast<long long>(r.epochs_done), static_cast<long long>(spec.epochs),
                r.ok() ? ("val accuracy " + std::to_string(r.val_accuracy).substr(0, 5)).c_str()
                       : (stopped ? "stopped early" : ("failed: " + r.error).c_str()));
    // Every too-low-lr job must have been stopped before its last epoch.
    if (spec.optimizer == "sgd" && (!stopped || r.epochs_done >= spec.epochs))
      ok = false;
    if (!r.ok() && !stopped)
      ok = false;
  }
  std::printf("%zu job(s), %zu stopped early by the pipeline's own actor: %s\n", results.size(),
              stopped_ids.size(), ok ? "as expected" : "NOT as expected");
  return ok ? 0 : 1;
}
