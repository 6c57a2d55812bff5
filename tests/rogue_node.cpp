// `pnn-tests --rogue-node MODE`: a serve node that lies. It publishes a node on
// 127.0.0.1 (an ephemeral port; it prints "listening PORT") whose one worker does not
// train: for every job it first sends the coordinator's event sink what no honest
// worker sends (a result for a job it was not given, named to escape the run's
// folder; progress for another job; a checkpoint for another job's folder; done),
// then answers the job with a made-up identity (model "..", scheduler "..", fold
// -31337). MODE "names" answers with the record files a job writes; MODE "files"
// adds files of its own choosing ("../../time.json", "result.json").
#include <pnn/actors/network.hpp>
#include <pnn/actors/protocol.hpp>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <csignal>
#include <pthread.h>

namespace pnn::test {

namespace {

job_result forged_result(uint32_t id, const std::string& mode) {
  job_result r;
  r.id = id;
  r.model = "..";
  r.scheduler = "..";
  r.fold = -31337;
  r.host = "rogue";
  r.code = error_code::none;
  r.val_accuracy = 1.0;
  r.epochs_done = 1;
  r.files.names = {"steps.csv", "epochs.csv"};
  r.files.contents = {"time,epoch,batch,step,loss,lr\n", "epoch\n"};
  if (mode == "files") {
    r.files.names.insert(r.files.names.end(), {"../../time.json", "result.json"});
    r.files.contents.insert(r.files.contents.end(), {"{\"forged\":1}", "{\"forged\":1}"});
  }
  return r;
}

/// Everything a rogue worker sends the sink before it answers job `j`.
template <class Self>
void lie_to_sink(Self* self, const event_sink_actor& sink, const job_spec& j,
                 const std::string& mode) {
  auto other = forged_result(j.id + 1000, mode);
  self->send(sink, result_atom::value, other);
  job_progress p;
  p.id = j.id + 1;
  p.epochs = 1;
  self->send(sink, progress_atom::value, p);
  job_checkpoint c;
  c.id = j.id;
  c.epoch = 99;
  c.out_dir = (std::filesystem::path{j.out_dir}.parent_path() / "fold-forged").string();
  c.bytes = {'x'};
  self->send(sink, checkpoint_atom::value, c);
  // The sink's handle is a collector's: try to end it.
  self->request(caf::actor_cast<collector_actor>(sink), caf::infinite, done_atom::value)
    .then([](double) {}, [](caf::error&) {});
}

worker_actor::behavior_type rogue_worker(worker_actor::pointer self, event_sink_actor sink,
                                         std::string mode) {
  auto answer = [=](const job_spec& j) {
    lie_to_sink(self, sink, j, mode);
    return forged_result(j.id, mode);
  };
  return {
    [=](run_atom, const job_spec& j) { return answer(j); },
    [=](run_atom, const job_spec& j, const job_checkpoint&) { return answer(j); },
    [=](run_atom, const job_spec& j, const sgd_link&) { return answer(j); },
    [](threads_atom, int32_t) {},
    [](cancel_atom) {},
    [](interrupt_atom) {},
  };
}

node_actor::behavior_type rogue_node(node_actor::pointer self, std::string mode) {
  return {
    [](status_atom) {
      node_info info;
      info.host = "rogue";
      info.slots = 1;
      info.cores = 1;
      return info;
    },
    [=](spawn_atom, const event_sink_actor& sink) {
      return std::vector<worker_actor>{self->spawn(rogue_worker, sink, mode)};
    },
    // A holder shard: its home gets checkpoints of another shard and with a NaN,
    // and the coordinator a refusal.
    [=](spawn_atom, const holder_spec& spec,
        const holder_home_actor& home) -> caf::result<holder_actor, bulk_endpoint> {
      auto other = spec.initial;
      other.layout ^= 1;
      self->send(home, checkpoint_atom::value, spec.shard, other, std::string{});
      auto nan = spec.initial;
      if (nan.bytes.size() >= sizeof(float)) {
        const float v = std::nanf("");
        std::memcpy(nan.bytes.data(), &v, sizeof v);
      }
      self->send(home, checkpoint_atom::value, spec.shard, nan, std::string{});
      return caf::make_error(caf::sec::runtime_error, "rogue: no holder shards here");
    },
  };
}

} // namespace

int rogue_node_main(const std::string& mode) {
  sigset_t signals; // served until SIGTERM (the test's background_process ends it so)
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 1);
  configure_network(cfg, 30);
  caf::actor_system sys{cfg};
  auto node = sys.spawn(rogue_node, mode);
  auto port = publish_actor(sys, node, 0, "127.0.0.1");
  if (!port) {
    std::printf("error: cannot listen: %s\n", sys.render(port.error()).c_str());
    return 1;
  }
  std::printf("listening %u\n", static_cast<unsigned>(*port));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  caf::anon_send_exit(node, caf::exit_reason::user_shutdown);
  return 0;
}

} // namespace pnn::test
