#include <pnn/experiments/sgd.hpp>

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/cluster.hpp>
#include <pnn/actors/compression.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/experiments/holder_file.hpp>
#include <pnn/experiments/session.hpp>
#include <pnn/experiments/distributed.hpp>
#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/network.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/error.hpp>
#include <pnn/interrupt.hpp>
#include <pnn/models/network.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/evaluation.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/optimizers.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/random.hpp>
#include <pnn/training/records.hpp>
#include <pnn/training/schedules.hpp>
#include <pnn/system.hpp>
#include "replica_run.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <tuple>

namespace fs = std::filesystem;

namespace pnn {

using namespace pnn::training;

namespace {

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

using detail::worker_name;

/// Sends every spec to its worker (with the holder) and answers (run_atom) with
/// all results in worker order once each worker answered or went down; a worker
/// that went down gets a failed result "worker lost: <reason>". Every result is
/// also sent to `sink` as it comes.
caf::behavior gather_results(caf::event_based_actor* self, std::vector<worker_actor> workers,
                             std::vector<job_spec> specs, sgd_link link, event_sink_actor sink) {
  struct state {
    std::vector<job_result> results;
    std::vector<char> done;
    size_t remaining = 0;
    caf::response_promise promise;
  };
  auto st = std::make_shared<state>();
  st->results.resize(workers.size());
  st->done.assign(workers.size(), 0);
  st->remaining = workers.size();
  auto settle = [self, st, sink, link, workers](size_t i, job_result r) {
    if (st->done[i])
      return;
    st->done[i] = 1;
    if (link.sync) { // the holder's rounds stop waiting for this worker
      if (link.shards.empty())
        self->send(link.holder, leave_atom::value, workers[i].address());
      for (const auto& shard : link.shards)
        self->send(shard, leave_atom::value, workers[i].address());
    }
    self->send(sink, result_atom::value, r);
    st->results[i] = std::move(r);
    if (--st->remaining == 0) {
      st->promise.deliver(st->results);
      self->quit();
    }
  };
  auto lost = [specs](size_t i, const std::string& why) {
    return failed_job(specs[i].id, error_code::worker_lost, "worker lost: " + why);
  };
  self->set_down_handler([self, st, workers, settle, lost](const caf::down_msg& msg) {
    for (size_t i = 0; i < workers.size(); ++i)
      if (workers[i].address() == msg.source)
        settle(i, lost(i, self->system().render(msg.reason)));
  });
  return {
    // Ctrl-C (from this process only): every share still running ends at its next
    // slice; its result comes back as usual, marked interrupted.
    [=](interrupt_atom) {
      if (!sent_from_this_process(self))
        return;
      for (size_t i = 0; i < workers.size(); ++i)
        if (!st->done[i])
          self->send(workers[i], interrupt_atom::value);
    },
    [=](run_atom) {
      st->promise = self->make_response_promise();
      if (workers.empty()) {
        st->promise.deliver(st->results);
        self->quit();
        return;
      }
      for (size_t i = 0; i < workers.size(); ++i) {
        self->monitor(workers[i]);
        // Before the share: the sink takes its events from this worker only.
        self->send(sink, assign_atom::value, specs[i], workers[i]);
        self->request(workers[i], caf::infinite, run_atom::value, specs[i], link)
          .then(
            [=](job_result& r) {
              if (self->current_sender() != workers[i].address())
                return; // not the worker's own answer
              // The share is the one sent to worker i, whatever the answer claims.
              if (r.id != specs[i].id)
                r = failed_job(specs[i].id, error_code::run_failed,
                               "the worker answered with a result for another share");
              settle(i, std::move(r));
            },
            [=](caf::error& e) { settle(i, lost(i, self->system().render(e))); });
      }
    },
  };
}

} // namespace

void validate(const sgd_options& o) {
  o.replica_group::validate("sgd");
  o.optimizer_group::validate();
  o.schedule_group::validate();
  o.output_group::validate();
  o.cluster_group::validate();
  if (!o.use_local && o.hosts.empty())
    bad("--no-local: expected --hosts h:p,... to run the workers on");
  if (o.n_push < 1)
    bad("--n-push " + std::to_string(o.n_push) + ": expected at least 1 (steps between pushes)");
  if (o.n_pull < 1)
    bad("--n-pull " + std::to_string(o.n_pull) + ": expected at least 1 (steps between pulls)");
  if (o.max_pushes < 1 || o.max_pushes > 1024)
    bad("--max-pushes " + std::to_string(o.max_pushes) + ": expected 1..1024");
  if (!(o.holder_timeout > 0))
    bad("--holder-timeout " + std::to_string(o.holder_timeout) + ": expected seconds > 0");
  if (o.optimizer_on != "workers" && o.optimizer_on != "holder")
    bad("--optimizer-on '" + o.optimizer_on + "': expected workers or holder");
  if (o.merge != "sum" && o.merge != "average")
    bad("--merge '" + o.merge + "': expected sum or average");
  if (o.sync) {
    if (o.optimizer_on == "workers" && o.merge != "average")
      bad("--merge " + o.merge + ": --sync averages the workers' updates (expected average)");
    if (o.staleness_scaling || o.max_staleness > 0)
      bad(std::string(o.staleness_scaling ? "--staleness-scaling" : "--max-staleness")
          + ": --sync rounds have no stale updates (leave it out)");
    if (o.n_pull != o.n_push)
      bad("--n-pull " + std::to_string(o.n_pull) + ": --sync workers pull after each push "
          "(expected --n-pull equal to --n-push, " + std::to_string(o.n_push) + ")");
  }
  if (!(o.local_after >= 0 && o.local_after <= static_cast<double>(o.epochs)))
    bad("--local-after " + std::to_string(o.local_after) + ": expected 0 to --epochs ("
        + std::to_string(o.epochs) + ") epochs of every-step pushes and pulls");
  if (o.max_staleness < 0)
    bad("--max-staleness " + std::to_string(o.max_staleness)
        + ": expected 0 (unbounded) or more holder versions");
  if (o.holder_checkpoint_every < 0)
    bad("--holder-checkpoint-every " + std::to_string(o.holder_checkpoint_every)
        + ": expected 0 (never) or more updates");
  compression::parse(o.compress); // throws naming --compress
  if (o.holder_shards < 1 || o.holder_shards > 256)
    bad("--holder-shards " + std::to_string(o.holder_shards) + ": expected 1..256");
  for (const auto& h : o.holder_hosts)
    if (h != "local")
      parse_host_port(h, "--holder-hosts"); // throws naming the flag and the entry
}

namespace {

/// The workers of a run, in the order they were started, and where each runs.
struct worker_set {
  std::vector<worker_actor> handles;
  std::vector<std::string> hosts; ///< "local" or the node's hostname:port
};

collector_options sgd_collector(const sgd_options& o, const Cluster& cluster, int32_t local) {
  collector_options co;
  record_to_files(co, o.out);
  co.progress = o.progress;
  // Progress labels, in the order the workers are started.
  uint32_t id = 0;
  for (const auto& node : cluster.nodes())
    for (int32_t s = 0; s < node.info.slots; ++s, ++id)
      co.labels[id] = worker_name(id) + "@" + node.info.host;
  for (int32_t s = 0; s < local; ++s, ++id)
    co.labels[id] = worker_name(id) + "@local";
  co.total_jobs = id;
  for (uint32_t i = 0; i < id; ++i)
    co.costs[i] = 1;
  return co;
}

/// One worker per slot of every host, then `local` here. Every worker hands its
/// record files back (this host's too), so the coordinator writes them all alike.
worker_set start_workers(const sgd_options& o, Cluster& cluster, event_sink_actor sink,
                         int32_t local) {
  worker_set set;
  for (const auto& node : cluster.nodes())
    for (auto& w : cluster.spawn_workers(node, sink)) {
      set.handles.push_back(w);
      set.hosts.push_back(node.info.host);
    }
  worker_options wo;
  wo.remote = true;
  wo.customize = o.customize;
  wo.train_data = o.train_data;
  wo.host = "local";
  for (auto& w : cluster.spawn_local_workers(local, sink, wo)) {
    set.handles.push_back(w);
    set.hosts.push_back("local");
  }
  return set;
}

/// The workers' deltas are averaged (and their learning rate scaled by their number).
bool averaging(const sgd_options& o) {
  return o.optimizer_on == "workers" && o.merge == "average";
}

/// The workers' learning rate is W x --lr: their deltas are averaged, or their
/// gradients make one step of the W-fold batch (--sync).
bool scaled_lr(const sgd_options& o) {
  return averaging(o) || o.sync;
}

/// The optimizer the holder runs ("" : the workers run theirs).
std::string holder_optimizer_name(const sgd_options& o) {
  return o.optimizer_on == "holder" ? optimizer_options::parse(o.optimizer, o.lr).name : "";
}

void remove_other_holder_files(const sgd_options& o);

/// The holder's checkpoint file: holder.pt, or shard i's of a sharded holder.
fs::path holder_file(const sgd_options& o, size_t shard) {
  return o.holder_shards <= 1 ? o.out / "holder.pt"
                              : o.out / ("holder.shard" + std::to_string(shard) + ".pt");
}

/// Where the shards of `model`'s parameters begin and end (--holder-shards).
std::vector<uint64_t> holder_bounds(const sgd_options& o, const models::Network& model) {
  const auto floats = static_cast<int64_t>(parameter_floats(model));
  if (o.holder_shards > floats)
    bad("--holder-shards " + std::to_string(o.holder_shards) + ": model "
        + model.registry_name() + " has only " + std::to_string(floats) + " parameter values");
  return shard_bounds(model, static_cast<size_t>(o.holder_shards));
}

/// The checkpoints this run's shards saved (written to their files, and kept here
/// for a lost shard to come back from: never a file of an earlier run).
struct checkpoint_store {
  std::mutex mtx;
  std::map<uint32_t, holder_checkpoint> last;
};

/// The holder of a run and where its shards are.
struct started_holder {
  std::unique_ptr<ParameterHolder> holder;
  std::vector<std::string> places; ///< "local" or the node's host name, per shard
  std::vector<holder_home_actor> homes; ///< each remote shard's (receives its checkpoints)
  /// Each shard's settings and starting values (a lost shard with no checkpoint
  /// yet comes back from them).
  std::vector<holder_spec> specs;
  std::shared_ptr<checkpoint_store> saved = std::make_shared<checkpoint_store>();
  /// Writes shard i's checkpoint to its file and keeps it in `saved`.
  std::function<void(uint32_t, const param_blob&, const std::string&)> save;
  /// Each shard's bulk port (port 0: none), for sgd_link::bulk.
  std::vector<bulk_endpoint> bulk;
};

/// Ends `handle` and waits until it has ended (its last messages handled), up to
/// `seconds`.
template <class Handle>
void end_and_wait(caf::actor_system& sys, const Handle& handle, double seconds = 30) {
  if (!handle)
    return;
  caf::scoped_actor self{sys};
  self->monitor(handle);
  self->send_exit(handle, caf::exit_reason::user_shutdown);
  self->receive([](const caf::down_msg&) {},
                caf::after(std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000))) >> [] {});
}

/// A local shard from `spec`, saving into its file through `save`.
/// With `port`, it serves its pulls and pushes there too (`endpoint` gets where).
holder_actor spawn_local_shard(caf::actor_system& sys, holder_spec spec,
                               const std::function<void(uint32_t, const param_blob&,
                                                        const std::string&)>& save,
                               const std::shared_ptr<bulk_server>& port = nullptr,
                               bulk_endpoint* endpoint = nullptr) {
  auto options = holder_options_from(spec);
  options.save = [save, i = spec.shard](const param_blob& p, const std::string& state) {
    save(i, p, state);
  };
  return spawn_holder(sys, std::move(spec.initial), std::move(options), port, endpoint);
}

/// Whether this run's shards serve their pulls and pushes on bulk ports: not with
/// --bulk-bind off, --sync (rounds are answered through the actors) or --tls (a bulk
/// port is plain TCP).
bool use_bulk(const sgd_options& o) {
  return o.bulk_bind != "off" && !o.sync && !o.tls.enabled();
}

/// The bulk port (bulk_wire.hpp) where workers on other hosts pull and push this
/// process's shards, and the address they reach it at: none without such workers,
/// with --bulk-bind off, --sync (rounds are answered through the actors) or --tls
/// (a bulk port is plain TCP). --bulk-bind auto listens on 127.0.0.1 when every
/// --hosts entry is on this machine's loopback, else on the address this machine
/// reaches the first host from. A port that cannot be opened is said, and the run
/// goes on through CAF.
std::shared_ptr<bulk_server> open_bulk_port(const sgd_options& o, std::string& host) {
  if (!use_bulk(o) || o.hosts.empty())
    return nullptr;
  // Where workers reach it: 127.0.0.1 when every host is on loopback, else the
  // address that reaches the first other one.
  std::string reach = "127.0.0.1";
  for (const auto& h : o.hosts) {
    auto name = h.substr(0, h.rfind(':'));
    if (name.size() > 2 && name.front() == '[' && name.back() == ']')
      name = name.substr(1, name.size() - 2);
    auto from = local_address_towards(name);
    if (!from.empty() && from.rfind("127.", 0) != 0 && from != "::1") {
      reach = from;
      break;
    }
  }
  const auto bind = o.bulk_bind == "auto" ? reach : o.bulk_bind;
  // A wildcard listens everywhere; workers are told the address above.
  host = bind == "0.0.0.0" || bind == "::" ? reach : bind;
  try {
    return std::make_shared<bulk_server>(bind);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn sgd: --bulk-bind: %s; pulls and pushes go through CAF\n", e.what());
    return nullptr;
  }
}

/// The holder: from --resume's checkpoints (parameters, and the optimizer's moments
/// when it runs the optimizer; one per shard), else from the model's parameters.
/// Shard i runs here, or on --holder-hosts' host i mod H (connected through
/// `remote`), sending its checkpoints to a home here that writes its file.
started_holder start_holder(const sgd_options& o, caf::actor_system& sys, Cluster& remote,
                            models::Network& model, const std::vector<holder_checkpoint>& restart,
                            size_t workers, const std::shared_ptr<bulk_server>& port,
                            const std::string& port_host) {
  holder_spec spec; // what every shard shares; holder_options_from makes the options
  spec.max_steps = o.n_push;
  if (averaging(o))
    spec.delta_scale = 1.0 / static_cast<double>(std::max<size_t>(1, workers));
  if (o.sync)
    spec.sync_members = static_cast<uint32_t>(workers);
  spec.checkpoint_every = static_cast<uint64_t>(o.holder_checkpoint_every);
  const auto name = holder_optimizer_name(o);
  if (!name.empty()) {
    spec.optimizer = o.optimizer;
    spec.lr = o.lr;
  }
  spec.staleness_scaling = o.staleness_scaling;
  const auto bounds = holder_bounds(o, model);
  std::vector<param_blob> initial;
  if (restart.empty()) {
    param_blob whole;
    whole.layout = layout_hash(model);
    whole.bytes = parameter_bytes(model);
    whole.count = whole.bytes.size() / sizeof(float);
    initial = ParameterHolder::split(whole, bounds);
  } else {
    std::vector<char> bytes;
    for (const auto& r : restart) {
      initial.push_back(r.params);
      bytes.insert(bytes.end(), r.params.bytes.begin(), r.params.bytes.end());
    }
    load_parameter_bytes(model, bytes);
  }
  started_holder out;
  out.save = [&o, name, saved = out.saved](uint32_t shard, const param_blob& p,
                                           const std::string& state) {
    holder_checkpoint c{p, name, state};
    write_holder_file(holder_file(o, shard), c);
    std::lock_guard<std::mutex> guard{saved->mtx};
    saved->last[shard] = std::move(c);
  };
  const auto& save = out.save;
  std::vector<holder_actor> running;
  auto end_started = [&] {
    for (auto& h : running)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    for (auto& h : out.homes)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  };
  try {
    for (size_t i = 0; i < initial.size(); ++i) {
      const auto& place =
        o.holder_hosts.empty() ? std::string("local") : o.holder_hosts[i % o.holder_hosts.size()];
      auto shard = spec;
      shard.shard = static_cast<uint32_t>(i);
      if (!restart.empty())
        shard.optimizer_state = restart[i].optimizer_state;
      shard.initial = std::move(initial[i]);
      out.specs.push_back(shard);
      out.bulk.emplace_back();
      if (place == "local") {
        out.bulk.back().host = port_host;
        running.push_back(spawn_local_shard(sys, std::move(shard), save, port, &out.bulk.back()));
        out.places.push_back("local");
        continue;
      }
      param_blob shape; // what this shard's checkpoints must be
      shape.layout = shard.initial.layout;
      shape.count = shard.initial.count;
      out.homes.push_back(spawn_holder_home(sys, shard.shard, std::move(shape), save));
      const auto& node = *std::find_if(remote.nodes().begin(), remote.nodes().end(),
                                       [&](const remote_node& n) { return n.address == place; });
      shard.bulk = use_bulk(o);
      running.push_back(remote.spawn_holder(node, shard, out.homes.back(), &out.bulk.back()));
      out.places.push_back(node.info.host);
    }
    out.holder = std::make_unique<ParameterHolder>(sys, layout_hash(model), bounds, running);
  } catch (...) {
    end_started();
    throw;
  }
  return out;
}

/// What the keeper of a run's remote holder shards did: each shard's handle now,
/// and every shard it brought back after its host was lost.
struct keeper_log {
  std::mutex mtx;
  std::vector<holder_actor> shards;
  std::vector<std::string> places;
  nlohmann::json restores = nlohmann::json::array();
  std::vector<holder_home_actor> homes; ///< of shards restored on another serve host
};

/// Starts shard `spec` (from a checkpoint) on a --holder-hosts host other than the
/// node `lost`: its handle and that host's label, or none when no other host takes it.
using relocate_fn = std::function<std::pair<holder_actor, std::string>(const holder_spec& spec,
                                                                       const caf::node_id& lost)>;

/// Shard `spec` brought back here from checkpoint `c` (none: its starting values):
/// its handle (none on failure), the version it starts from, and why it failed.
std::tuple<holder_actor, uint64_t, std::string>
restore_shard(caf::actor_system& sys, holder_spec spec, std::optional<holder_checkpoint> c,
              const std::function<void(uint32_t, const param_blob&, const std::string&)>& save) {
  if (c) {
    spec.initial = std::move(c->params);
    spec.optimizer_state = std::move(c->optimizer_state);
  }
  const uint64_t version = spec.initial.version;
  try {
    return {spawn_local_shard(sys, std::move(spec), save), version, ""};
  } catch (const std::exception& e) {
    return {holder_actor{}, version, e.what()};
  }
}

/// Where lost shard `spec` runs again, from its last checkpoint `c` (none: its
/// starting values): on another holder host (`relocate`), else here; the version it
/// starts from, and why it does not run (none: "").
struct comeback {
  holder_actor next;
  std::string place; ///< the host's label, or "local"
  uint64_t version = 0;
  std::string failure;
};

comeback bring_back(caf::actor_system& sys, holder_spec spec, std::optional<holder_checkpoint> c,
                    const relocate_fn& relocate, const caf::node_id& lost,
                    const std::function<void(uint32_t, const param_blob&, const std::string&)>& save) {
  if (c) {
    spec.initial = std::move(c->params);
    spec.optimizer_state = std::move(c->optimizer_state);
  }
  comeback out;
  out.version = spec.initial.version;
  if (relocate)
    std::tie(out.next, out.place) = relocate(spec, lost);
  if (out.next)
    return out;
  out.place = "local";
  std::tie(out.next, out.version, out.failure) =
    restore_shard(sys, std::move(spec), std::nullopt, save);
  return out;
}

using keeper_tick_atom = caf::atom_constant<caf::atom("ktick")>;
using keeper_actor = holder_directory_actor::extend<caf::reacts_to<keeper_tick_atom>>;

/// Watches the remote shards (monitor, and their version 5 times a second). A
/// lost one (its host died or went silent) comes back here from its last
/// checkpoint file (or its starting values), the loss is logged, and workers that
/// ask the directory for it get the new handle.
keeper_actor::behavior_type holder_keeper(keeper_actor::pointer self,
                                          std::shared_ptr<keeper_log> log,
                                          std::vector<holder_spec> specs,
                                          std::function<void(uint32_t, const param_blob&,
                                                             const std::string&)> save,
                                          std::function<std::optional<holder_checkpoint>(uint32_t)> last,
                                          relocate_fn relocate, double started) {
  struct state {
    std::vector<uint64_t> versions; // last seen
    std::map<uint32_t, std::vector<caf::typed_response_promise<holder_actor>>> waiting;
    std::map<uint32_t, std::string> failed; // shards that could not be restored
  };
  auto st = std::make_shared<state>();
  {
    std::lock_guard<std::mutex> guard{log->mtx};
    st->versions.assign(log->shards.size(), 0);
    for (size_t i = 0; i < log->shards.size(); ++i)
      if (log->places[i] != "local")
        self->monitor(log->shards[i]);
  }
  self->set_down_handler([=](const caf::down_msg& msg) {
    std::lock_guard<std::mutex> guard{log->mtx};
    for (size_t i = 0; i < log->shards.size(); ++i) {
      if (log->shards[i].address() != msg.source)
        continue;
      auto [next, place, restored, failure] = bring_back(
        self->system(), specs[i], last(static_cast<uint32_t>(i)), relocate, msg.source.node(), save);
      if (next && place != "local")
        self->monitor(next);
      std::fprintf(stderr,
                   "pnn sgd: holder shard %zu on %s lost (%s); %s from version %llu (it was at "
                   "%llu or later)\n",
                   i, log->places[i].c_str(), self->system().render(msg.reason).c_str(),
                   failure.empty() ? ("restored on " + (place == "local" ? "this host" : place)).c_str()
                                   : ("not restored: " + failure).c_str(),
                   static_cast<unsigned long long>(restored),
                   static_cast<unsigned long long>(st->versions[i]));
      st->versions[i] = std::max(st->versions[i], restored); // polled 5 times a second
      log->restores.push_back(
        {{"shard", i},
         {"lost_host", log->places[i]},
         {"reason", self->system().render(msg.reason)},
         {"version_seen", st->versions[i]},
         {"restored_version", restored},
         {"versions_lost_at_least",
          st->versions[i] > restored ? st->versions[i] - restored : 0},
         {"at_seconds", wall_clock_seconds() - started},
         {"restored", failure.empty()},
         {"restored_on", failure.empty() ? place : std::string()}});
      auto waiting = std::move(st->waiting[static_cast<uint32_t>(i)]);
      st->waiting.erase(static_cast<uint32_t>(i));
      if (!failure.empty()) {
        st->failed[static_cast<uint32_t>(i)] = failure;
        for (auto& p : waiting)
          p.deliver(make_error(error_code::holder_failed, "shard not restored: " + failure));
        continue;
      }
      log->shards[i] = next;
      log->places[i] = place;
      st->versions[i] = restored;
      for (auto& p : waiting)
        p.deliver(next);
    }
  });
  self->send(self, keeper_tick_atom::value);
  return {
    [=](pull_atom, uint32_t shard, const holder_actor& failed) -> caf::result<holder_actor> {
      std::lock_guard<std::mutex> guard{log->mtx};
      if (shard >= log->shards.size())
        return make_error(error_code::invalid_argument, "no holder shard " + std::to_string(shard));
      if (auto f = st->failed.find(shard); f != st->failed.end())
        return make_error(error_code::holder_failed, "shard not restored: " + f->second);
      if (log->shards[shard] != failed)
        return log->shards[shard];
      if (st->waiting[shard].size() >= 4096) // one per worker and shard at most, normally
        return make_error(error_code::invalid_argument, "too many waiting for shard "
                                                          + std::to_string(shard));
      auto promise = self->make_response_promise<holder_actor>();
      st->waiting[shard].push_back(promise);
      return promise;
    },
    [=](keeper_tick_atom) {
      if (self->current_sender() != self->ctrl())
        return; // its own timer only
      std::lock_guard<std::mutex> guard{log->mtx};
      for (size_t i = 0; i < log->shards.size(); ++i) {
        if (log->places[i] == "local")
          continue;
        const auto h = log->shards[i];
        self->request(h, std::chrono::seconds(5), status_atom::value)
          .then(
            [=](holder_status& s) {
              std::lock_guard<std::mutex> guard{log->mtx};
              if (log->shards[i] == h)
                st->versions[i] = std::max(st->versions[i], s.version);
            },
            [](caf::error&) {});
      }
      self->delayed_send(self, std::chrono::milliseconds(200), keeper_tick_atom::value);
    },
  };
}

/// The keeper of a run's remote shards (asynchronous runs with a shard elsewhere;
/// none otherwise), kept by the session.
/// How the keeper starts a lost shard on another --holder-hosts host: each node
/// but the lost one in turn, with a new home here for its checkpoints (kept in
/// `log`, called with its lock held); workers reach it through its actor.
relocate_fn relocator(caf::actor_system& sys, std::shared_ptr<Cluster> hosts,
                      std::function<void(uint32_t, const param_blob&, const std::string&)> save,
                      std::shared_ptr<keeper_log> log) {
  return [&sys, hosts, save, log](const holder_spec& spec, const caf::node_id& lost) {
    for (const auto& node : hosts->nodes()) {
      if (node.handle.node() == lost)
        continue;
      param_blob shape;
      shape.layout = spec.initial.layout;
      shape.count = spec.initial.count;
      auto home = spawn_holder_home(sys, spec.shard, std::move(shape), save);
      try {
        auto h = hosts->spawn_holder(node, spec, home);
        log->homes.push_back(home);
        return std::pair<holder_actor, std::string>{h, node.info.host};
      } catch (const std::exception& e) {
        std::fprintf(stderr, "pnn sgd: holder shard %u not restarted on %s: %s\n", spec.shard,
                     node.address.c_str(), e.what());
        caf::anon_send_exit(home, caf::exit_reason::user_shutdown);
      }
    }
    return std::pair<holder_actor, std::string>{};
  };
}

keeper_actor start_keeper(const sgd_options& o, run_session& session,
                          const started_holder& started, std::shared_ptr<keeper_log> log,
                          relocate_fn relocate) {
  const bool remote_shards = std::any_of(started.places.begin(), started.places.end(),
                                         [](const std::string& p) { return p != "local"; });
  if (!remote_shards || o.sync)
    return {};
  // This run's last checkpoint of the shard (none yet: its starting values).
  auto last = [saved = started.saved](uint32_t shard) -> std::optional<holder_checkpoint> {
    std::lock_guard<std::mutex> guard{saved->mtx};
    auto i = saved->last.find(shard);
    if (i == saved->last.end())
      return std::nullopt;
    return i->second;
  };
  return session.keep(session.system().spawn(holder_keeper, std::move(log), started.specs,
                                             started.save, last, std::move(relocate),
                                             wall_clock_seconds()));
}

/// The end of a run's holder: the keeper ends before the holder is read (no shard
/// moves after this), its counters and parameters go into `report` and `model`,
/// and its end state into the checkpoint files (with --holder-checkpoint-every, or
/// after an interrupt: --resume goes on from there) once the homes ended (their
/// host ends those shards; no late periodic checkpoint lands over it).
void finish_holder(const sgd_options& o, run_session& session, started_holder& started,
                   const keeper_actor& keeper, keeper_log& log, bool interrupted,
                   sgd_report& report, models::Network& model) {
  auto& holder = started.holder;
  end_and_wait(session.system(), keeper);
  if (keeper) {
    std::lock_guard<std::mutex> guard{log.mtx};
    for (size_t i = 0; i < log.shards.size(); ++i)
      holder->replace(i, log.shards[i]);
    report.holder_restores = log.restores;
    started.places = log.places;
    started.homes.insert(started.homes.end(), log.homes.begin(), log.homes.end());
  }
  report.holder_places = started.places;
  report.holder = holder->status();
  report.holder_shards = holder->shard_status();
  report.holder_bounds = holder->bounds();
  report.rejected_updates = report.holder.rejected;
  holder->load_into(model);
  std::vector<std::pair<param_blob, std::string>> end_state;
  if (o.holder_checkpoint_every > 0 || interrupted)
    end_state = holder->checkpoints();
  for (const auto& h : started.homes)
    end_and_wait(session.system(), h);
  for (size_t i = 0; i < end_state.size(); ++i)
    write_holder_file(holder_file(o, i), {std::move(end_state[i].first), holder_optimizer_name(o),
                                          end_state[i].second});
}

/// What the actors gave back.
struct sgd_outcome {
  std::vector<job_result> results;
  std::vector<std::string> hosts;
  bool interrupted = false; ///< Ctrl-C stopped the workers
};

/// What every worker is told of the holder: its shards, their bulk ports, the
/// keeper that knows where a moved shard went, and how to push and pull.
sgd_link worker_link(const sgd_options& o, const ParameterHolder& holder,
                     const started_holder& started, const keeper_actor& keeper) {
  sgd_link link;
  holder.link(link);
  if (std::any_of(started.bulk.begin(), started.bulk.end(),
                  [](const bulk_endpoint& e) { return e.port != 0; }))
    link.bulk = started.bulk;
  if (keeper)
    link.directory = caf::actor_cast<holder_directory_actor>(keeper);
  const auto comp = compression::parse(o.compress);
  link.encoding = static_cast<uint8_t>(comp.encoding);
  link.topk_fraction = comp.fraction;
  link.n_pull = o.n_pull;
  link.n_push = o.n_push;
  link.max_pushes = o.max_pushes;
  link.holder_timeout = o.holder_timeout;
  link.gradients = o.optimizer_on == "holder";
  link.max_staleness = o.max_staleness;
  link.sync = o.sync;
  link.local_after = o.local_after;
  return link;
}

/// Trains the model through a holder with one worker per slot; the holder's final
/// parameters end up in `model`, its counters in the report.
sgd_outcome train_through_holder(const sgd_options& o, sgd_report& report, models::Network& model,
                                 const std::vector<holder_checkpoint>& restart,
                                 int64_t train_samples,
                                 const std::string& dataset, int32_t cores, int32_t local) {
  const bool remote_holder =
    std::any_of(o.holder_hosts.begin(), o.holder_hosts.end(), [](auto& h) { return h != "local"; });
  run_session session{{std::max(1, std::min(cores, std::max(1, local))),
                       !o.hosts.empty() || remote_holder,
                       o.peer_timeout, o.connect_timeout, o.tls, "--hosts"}};
  auto& cluster = session.cluster();
  // Every host first: one that cannot be reached stops the run before any work.
  for (const auto& h : o.hosts)
    cluster.connect(h);
  auto collector = session.start_collector(sgd_collector(o, cluster, local));
  auto workers = start_workers(o, cluster, collector, local);
  const size_t n = workers.handles.size();
  if (static_cast<int64_t>(n) > train_samples)
    bad("sgd: " + std::to_string(n) + " workers but only " + std::to_string(train_samples)
        + " training samples");
  std::vector<job_spec> specs;
  for (size_t i = 0; i < n; ++i) {
    specs.push_back(detail::worker_spec(o, o, o, o, model.registry_name(), dataset,
                                        static_cast<int32_t>(i), static_cast<int32_t>(n)));
    if (scaled_lr(o))
      specs.back().lr *= static_cast<double>(n);
  }
  // Holder hosts (not --hosts: they run no workers unless named there too).
  // (Shared with the keeper, which may start a lost shard on one of them.)
  auto holder_cluster =
    std::make_shared<Cluster>(session.system(), o.connect_timeout, "--holder-hosts");
  auto& holder_hosts = *holder_cluster;
  for (const auto& h : o.holder_hosts)
    if (h != "local")
      holder_hosts.connect(h);
  std::string bulk_host;
  const auto bulk = open_bulk_port(o, bulk_host);
  auto started = start_holder(o, session.system(), holder_hosts, model, restart, n, bulk, bulk_host);
  auto& holder = started.holder;
  for (const auto& h : started.homes)
    session.keep(h);
  // Remote shards (asynchronous runs): a keeper brings a lost one back here.
  auto log = std::make_shared<keeper_log>();
  log->shards = holder->shards();
  // Whatever happens, every shard (restored ones too) ends before the session does.
  struct end_shards {
    std::shared_ptr<keeper_log> log;
    ~end_shards() {
      std::lock_guard<std::mutex> guard{log->mtx};
      for (auto& h : log->shards)
        caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
      for (auto& h : log->homes) // of shards restored elsewhere (their hosts end them)
        caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
    }
  } shards_end{log};
  log->places = started.places;
  const auto keeper = start_keeper(o, session, started, log,
                                   relocator(session.system(), holder_cluster, started.save, log));
  if (o.on_holder)
    o.on_holder(*holder);
  const auto link = worker_link(o, *holder, started, keeper);
  // A request to a worker on a host that dies is never answered (the message
  // already left): the gatherer monitors every worker and turns its down message
  // into a "worker lost" result.
  sgd_outcome out;
  out.hosts = workers.hosts;
  auto gatherer = session.system().spawn(gather_results, workers.handles, specs, link,
                                         event_sink_actor{collector});
  {
    // Ctrl-C: every worker stops at its next slice; the holder keeps what they pushed.
    std::unique_ptr<interrupt_watch> watch;
    if (o.handle_interrupts)
      watch = std::make_unique<interrupt_watch>([&session, gatherer] {
        std::fprintf(stderr, "\npnn sgd: interrupted: stopping the workers and saving the "
                             "holder (Ctrl-C again to quit at once)\n");
        caf::scoped_actor s{session.system()};
        s->send(gatherer, interrupt_atom::value);
      });
    session.self()
      ->request(gatherer, caf::infinite, run_atom::value)
      .receive([&](std::vector<job_result>& r) { out.results = std::move(r); },
               [&](caf::error& e) {
                 out.results.assign(n,
                                    failed_job(0, error_code::worker_lost,
                                               "worker lost: " + session.system().render(e)));
               });
    out.interrupted = watch && watch->fired();
  }
  finish_holder(o, session, started, keeper, *log, out.interrupted, report, model);
  report.cpu_utilization_mean = session.finish_collector();
  holder->stop();
  remove_other_holder_files(o); // this run's files are written
  return out;
}

/// The workers' records, into workers/worker<i>/, and their steps on one clock.
void collect_workers(sgd_report& report, sgd_outcome& outcome, const fs::path& out) {
  double t0 = std::numeric_limits<double>::infinity();
  for (const auto& r : outcome.results)
    if (r.clock_zero > 0)
      t0 = std::min(t0, r.clock_zero);
  if (!std::isfinite(t0))
    t0 = 0;
  report.train_started_at = t0;
  for (size_t i = 0; i < outcome.results.size(); ++i) {
    auto& r = outcome.results[i];
    sgd_worker_report w;
    w.host = outcome.hosts[i];
    const fs::path dir = out / "workers" / worker_name(i);
    for (const auto& name : write_record_files(dir, r.files.names, r.files.contents))
      std::fprintf(stderr, "pnn sgd: refused a record file named '%s' from %s\n", name.c_str(),
                   r.host.c_str());
    for (size_t f = 0; f < r.files.names.size() && f < r.files.contents.size(); ++f) {
      if (r.files.names[f] != "metrics.json")
        continue;
      auto j = nlohmann::json::parse(r.files.contents[f], nullptr, false);
      if (j.is_object() && j.contains("steps") && j["steps"].is_array())
        for (const auto& s : j["steps"]) {
          auto step = step_from_json(s);
          step.time += r.clock_zero - t0;
          w.steps.push_back(step);
        }
    }
    r.files.contents.clear();
    w.samples = r.samples;
    w.result = r;
    report.workers.push_back(std::move(w));
  }
}

/// The holder keeps parameters only: BatchNorm statistics of the trained parameters
/// come from (up to 10,240 samples of) this host's training data. Returns the layers
/// and samples used.
std::pair<int64_t, int64_t> recompute_statistics(models::Network& model, const job_spec& first,
                                                 const sgd_options& o,
                                                 const training::dataset& train, int32_t cores) {
  use_intra_op_threads(cores);
  auto sample = all_indices(train.size());
  sample.resize(static_cast<size_t>(std::min<int64_t>(train.size(), 10240)));
  const int64_t layers =
    recompute_batchnorm_statistics(model, train, sample, detail::eval_transform(first, o));
  return {layers, layers > 0 ? static_cast<int64_t>(sample.size()) : 0};
}

/// What went wrong with which workers: lost (their host went) or failed.
struct worker_outcomes {
  size_t finished = 0;
  size_t interrupted = 0; ///< stopped by Ctrl-C: no failure
  std::vector<std::string> failures, lost;
};

worker_outcomes sort_outcomes(const sgd_report& report) {
  worker_outcomes w;
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& r = report.workers[i].result;
    const auto name = worker_name(i) + "@" + report.workers[i].host;
    if (r.ok())
      ++w.finished;
    else if (r.code == error_code::interrupted)
      ++w.interrupted;
    else if (r.code == error_code::worker_lost)
      w.lost.push_back(name);
    else
      w.failures.push_back(name + ": " + r.error);
  }
  return w;
}

/// Mean staleness of a worker's accepted pushes (NaN when none was accepted).
double mean_staleness(const sgd_counters& c) {
  const int64_t accepted = c.accepted_pushes;
  return accepted > 0 ? static_cast<double>(c.staleness_sum) / static_cast<double>(accepted)
                      : std::numeric_limits<double>::quiet_NaN();
}

/// Over every worker's accepted pushes.
nlohmann::json staleness_mean(const sgd_report& report) {
  uint64_t sum = 0;
  int64_t accepted = 0;
  for (const auto& w : report.workers) {
    sum += w.result.sgd.staleness_sum;
    accepted += w.result.sgd.accepted_pushes;
  }
  return number_or_null(accepted > 0 ? static_cast<double>(sum) / static_cast<double>(accepted)
                                     : std::numeric_limits<double>::quiet_NaN());
}

uint64_t staleness_max(const sgd_report& report) {
  uint64_t m = 0;
  for (const auto& w : report.workers)
    m = std::max(m, w.result.sgd.staleness_max);
  return m;
}

nlohmann::json worker_list(const sgd_report& report) {
  nlohmann::json workers = nlohmann::json::array();
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& w = report.workers[i];
    const auto& r = w.result;
    workers.push_back({{"worker", i},
                       {"host", w.host},
                       {"slot", r.slot},
                       {"ok", r.ok()},
                       {"error", r.error},
                       {"samples", r.samples},
                       {"steps", w.steps.size()},
                       {"pulls", r.sgd.pulls},
                       {"pushes", r.sgd.pushes},
                       {"rejected_pushes", r.sgd.rejected_pushes},
                       {"staleness_mean", number_or_null(mean_staleness(r.sgd))},
                       {"staleness_max", r.sgd.staleness_max},
                       {"sync_pulls", r.sgd.sync_pulls},
                       {"lost_pushes", r.sgd.lost_pushes},
                       {"shard_moves", r.sgd.shard_moves},
                       {"pushed_bytes", r.sgd.pushed_bytes},
                       {"bulk_requests", r.sgd.bulk_requests},
                       {"started_at", w.steps.empty() ? 0.0 : w.steps.front().time},
                       {"finished_at", w.steps.empty() ? 0.0 : w.steps.back().time},
                       {"train_loss", number_or_null(r.train_loss)},
                       {"files", (fs::path("workers") / worker_name(i)).string()}});
  }
  return workers;
}

std::string sgd_markdown(const sgd_options& o, const sgd_report& report, const std::string& model,
                         const std::string& dataset, size_t hosts) {
  std::ostringstream md;
  char buf[320];
  md << "# pnn sgd: " << model << " on " << dataset << ", " << report.workers.size()
     << " worker(s) on " << hosts << " host(s), n_push " << o.n_push << ", n_pull " << o.n_pull
     << (o.local_after > 0
           ? " (every step for the first " + nlohmann::json(o.local_after).dump() + " epoch(s))"
           : std::string{})
     << "\n\n"
     << "| workers | epochs | test accuracy | final train loss | samples/s | updates applied | "
        "rejected | training time | wall time |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  std::snprintf(buf, sizeof buf,
                "| %zu | %lld | %.4f | %.4f | %.0f | %llu | %llu | %.1f s | %.1f s |\n",
                report.workers.size(), static_cast<long long>(o.epochs), report.test_accuracy,
                report.final_train_loss, report.samples_per_second,
                static_cast<unsigned long long>(report.holder.applied),
                static_cast<unsigned long long>(report.rejected_updates), report.train_seconds,
                report.wall_seconds);
  md << buf;
  md << "\n" << (o.sync ? "Synchronous rounds, optimizer on the " : "Optimizer on the ")
     << (o.optimizer_on == "holder"
           ? std::string("holder")
           : "workers (deltas " + std::string(averaging(o) ? "averaged, workers at W x lr" : "summed")
               + ")")
     << ", staleness scaling " << (o.staleness_scaling ? "on" : "off") << ", max staleness "
     << (o.max_staleness > 0 ? std::to_string(o.max_staleness) : std::string("unbounded"))
     << ".\n\n| worker | host | samples | pulls | pushes | rejected pushes | staleness mean | "
        "staleness max | sync pulls |\n|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < report.workers.size(); ++i) {
    const auto& w = report.workers[i];
    const double stale = mean_staleness(w.result.sgd);
    if (std::isfinite(stale))
      std::snprintf(buf, sizeof buf, "%.2f", stale);
    else
      std::snprintf(buf, sizeof buf, "-");
    md << "| " << worker_name(i) << " | " << w.host << " | " << w.result.samples << " | "
       << w.result.sgd.pulls << " | " << w.result.sgd.pushes << " | "
       << w.result.sgd.rejected_pushes << " | " << buf << " | " << w.result.sgd.staleness_max
       << " | " << w.result.sgd.sync_pulls << " |\n";
  }
  return md.str();
}

/// Says which workers were lost; throws when none finished or one failed.
void check_outcomes(const worker_outcomes& w) {
  if (!w.lost.empty())
    std::fprintf(stderr, "pnn sgd: %zu worker(s) lost during the run (%s%s); the others finished\n",
                 w.lost.size(), w.lost.front().c_str(), w.lost.size() > 1 ? ", ..." : "");
  if (w.finished == 0 && w.interrupted == 0 && w.failures.empty())
    throw pnn::error(error_code::run_failed, "sgd: every worker was lost");
  if (!w.failures.empty())
    throw pnn::error(error_code::run_failed,
                     "sgd: " + w.failures.front()
                       + (w.failures.size() > 1 ? " (and " + std::to_string(w.failures.size() - 1)
                              + " more; see summary.json)"
                                                : ""));
}

/// The run's settings as TensorBoard's HParams show them.
std::vector<training::tensorboard::hparam>
tensorboard_hparams(const sgd_options& o, const std::string& model, int32_t workers) {
  return detail::replica_hparams(o, o, o, model, workers,
                                 {{"n_push", static_cast<double>(o.n_push)},
                                  {"n_pull", static_cast<double>(o.n_pull)},
                                  {"optimizer_on", o.optimizer_on},
                                  {"sync", o.sync},
                                  {"local_after", o.local_after},
                                  {"holder_shards", static_cast<double>(o.holder_shards)},
                                  {"compress", o.compress}});
}

/// How many holder shards the checkpoint files in `out` are of: holder.pt is one,
/// holder.shard0.pt ... holder.shard<S-1>.pt are S (0: none). (A run removes the
/// files of other shard counts: remove_other_holder_files.)
int32_t saved_shards(const fs::path& out) {
  int32_t n = 0; // one past the highest shard file (a gap is a missing file)
  for (int32_t i = 0; i < 256; ++i)
    if (fs::exists(out / ("holder.shard" + std::to_string(i) + ".pt")))
      n = i + 1;
  return n > 0 ? n : fs::exists(out / "holder.pt") ? 1 : 0;
}

/// Removes holder files that are not of this run's shard count, so that a later
/// --resume cannot mix them with this run's.
void remove_other_holder_files(const sgd_options& o) {
  std::error_code ec;
  if (o.holder_shards > 1)
    fs::remove(o.out / "holder.pt", ec);
  for (int32_t i = o.holder_shards > 1 ? o.holder_shards : 0; i < 256; ++i)
    fs::remove(o.out / ("holder.shard" + std::to_string(i) + ".pt"), ec);
}

/// --resume: the holder's last checkpoint (one per shard), for this very model, the
/// same shards and the same place of the optimizer (none without --resume or
/// holder files).
std::vector<holder_checkpoint> read_restart(const sgd_options& o, models::Network& model) {
  if (!o.resume)
    return {};
  const int32_t found =
    o.holder_shards == 1 && fs::exists(holder_file(o, 0)) ? 1 : saved_shards(o.out);
  if (found == 0)
    return {};
  if (found != o.holder_shards)
    bad("--resume: " + o.out.string() + " holds a holder of " + std::to_string(found)
        + (found == 1 ? " shard (holder.pt)" : " shards (holder.shard<i>.pt)")
        + ", this run asks for --holder-shards " + std::to_string(o.holder_shards)
        + " (expected the same)");
  const auto bounds = holder_bounds(o, model);
  const auto layout = layout_hash(model);
  const auto name = holder_optimizer_name(o);
  std::vector<holder_checkpoint> restart;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    const auto file = holder_file(o, i).string();
    if (!fs::exists(file))
      bad("--resume: " + file + " is missing (the holder has " + std::to_string(o.holder_shards)
          + " shards)");
    auto r = read_holder_file(file);
    const uint64_t want = o.holder_shards == 1 ? layout : shard_layout(layout, bounds[i], bounds[i + 1]);
    if (r.params.layout != want || r.params.count != bounds[i + 1] - bounds[i])
      bad(file + ": parameters of another model than " + model.registry_name()
          + (o.holder_shards > 1 ? " (or of another shard)" : ""));
    if (r.optimizer != name)
      bad("--resume: " + file + " was trained with "
          + (r.optimizer.empty() ? std::string("the optimizer on the workers")
                                 : "the holder running " + r.optimizer)
          + ", this run asks for "
          + (name.empty() ? std::string("--optimizer-on workers")
                          : "--optimizer-on holder with " + name));
    restart.push_back(std::move(r));
  }
  return restart;
}

/// `items` without repeats, in the order they first appear.
std::vector<std::string> distinct(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& h : items)
    if (std::find(out.begin(), out.end(), h) == out.end())
      out.push_back(h);
  return out;
}

nlohmann::json to_json(const holder_status& h) {
  return {{"version", h.version},
          {"applied", h.applied},
          {"rejected", h.rejected},
          {"pulls", h.pulls},
          {"rounds", h.rounds},
          {"streamed", h.streamed}};
}

/// The holder's counters; a sharded holder's also per shard, with its values.
nlohmann::json holder_json(const sgd_report& r) {
  auto j = to_json(r.holder);
  const bool elsewhere = std::any_of(r.holder_places.begin(), r.holder_places.end(),
                                     [](const std::string& p) { return p != "local"; });
  if (r.holder_shards.size() > 1 || elsewhere) {
    auto shards = nlohmann::json::array();
    for (size_t i = 0; i < r.holder_shards.size(); ++i) {
      auto s = to_json(r.holder_shards[i]);
      s["begin"] = r.holder_bounds.at(i);
      s["end"] = r.holder_bounds.at(i + 1);
      s["host"] = i < r.holder_places.size() ? r.holder_places[i] : "local";
      shards.push_back(std::move(s));
    }
    j["shards"] = std::move(shards);
  }
  return j;
}

/// Update bytes every worker pushed (values, squares, indices).
int64_t pushed_bytes(const sgd_report& r) {
  int64_t n = 0;
  for (const auto& w : r.workers)
    n += w.result.sgd.pushed_bytes;
  return n;
}

/// The version a resumed holder went on from (a sharded one's least); 0: a fresh start.
uint64_t resumed_version(const std::vector<holder_checkpoint>& restart) {
  uint64_t v = restart.empty() ? 0 : restart.front().params.version;
  for (const auto& r : restart)
    v = std::min(v, r.params.version);
  return v;
}

} // namespace

sgd_report run_sgd(const sgd_options& o) {
  validate(o);
  const run_meter meter;
  const int32_t cores = o.cores > 0 ? o.cores : available_cores();
  const int32_t local = o.use_local ? (o.slots > 0 ? o.slots : cores) : 0;
  ensure_directory(o.out);
  // This host's copy of the data: the model's shape, local workers, the test.
  const auto data = detail::replica_data(o, o);
  std::shared_ptr<models::Network> model = o.initial_model;
  if (!model)
    model = make_seeded_model(o.model, data.train->channels(), data.train->num_classes(), o.seed);
  const std::string model_name = model->registry_name();
  const auto restart = read_restart(o, *model);
  const std::string dataset = detail::replica_dataset_name(o, o);

  sgd_report report;
  report.model = model;
  auto outcome =
    train_through_holder(o, report, *model, restart, data.train->size(), dataset, cores, local);
  collect_workers(report, outcome, o.out);
  std::vector<const hogwild_worker_report*> traces;
  for (const auto& w : report.workers)
    traces.push_back(&w);
  detail::set_throughput(report, traces);
  write_loss_files(o.out, traces, o.loss_window);
  std::pair<int64_t, int64_t> bn{0, 0};
  report.interrupted = outcome.interrupted;
  report.test_accuracy = report.test_loss = std::numeric_limits<double>::quiet_NaN();
  if (!outcome.results.empty()) {
    const auto first = detail::worker_spec(o, o, o, o, model_name, dataset, 0,
                                           static_cast<int32_t>(outcome.results.size()));
    bn = recompute_statistics(*model, first, o, *data.train, cores);
    detail::test_model(report, *model, first, o, data.test, o.out, cores);
  }
  detail::save_model(*model, o.out / "model.pt");
  detail::set_spending(report, meter);

  const auto outcomes = sort_outcomes(report);
  const auto host_list = distinct(outcome.hosts);
  auto summary =
    detail::shared_summary("sgd", report, o, o, o,
                           {dataset, model_name, models::parameter_count(*model),
                            data.train->size(), data.test ? data.test->size() : 0, cores});
  summary.workers = static_cast<int64_t>(report.workers.size());
  summary.more.update({{"rejected_updates", report.rejected_updates},
                       {"holder_restores", report.holder_restores},
                       {"holder", holder_json(report)},
                       {"holder_shards", o.holder_shards},
                       {"compress", compression::parse(o.compress).name()},
                       {"pushed_bytes", pushed_bytes(report)},
                       {"local_workers", local},
                       {"hosts", host_list},
                       {"n_push", o.n_push},
                       {"n_pull", o.n_pull},
                       {"local_after", o.local_after},
                       {"max_pushes", o.max_pushes},
                       {"resumed_from_version", resumed_version(restart)},
                       {"optimizer_on", o.optimizer_on},
                       {"merge", o.optimizer_on == "workers" ? nlohmann::json(o.merge)
                                                             : nlohmann::json()},
                       {"sync", o.sync},
                       {"staleness_scaling", o.staleness_scaling},
                       {"max_staleness", o.max_staleness},
                       {"staleness_mean", staleness_mean(report)},
                       {"staleness_max", staleness_max(report)},
                       {"batchnorm_layers", bn.first},
                       {"batchnorm_statistics_samples", bn.second},
                       {"interrupted", report.interrupted},
                       {"failed_workers", outcomes.failures},
                       {"lost_workers", outcomes.lost},
                       {"worker_list", worker_list(report)}});
  report.summary = summary.to_json();
  detail::write_events(o.out, report, traces,
                       tensorboard_hparams(o, model_name, static_cast<int32_t>(traces.size())),
                       !report.interrupted && outcomes.failures.empty() && outcomes.lost.empty());
  write_file_atomic(o.out / "summary.json", report.summary.dump(2) + "\n");
  write_file_atomic(o.out / "summary.md",
                    sgd_markdown(o, report, model_name, dataset, host_list.size()));
  check_outcomes(outcomes);
  return report;
}

} // namespace pnn
