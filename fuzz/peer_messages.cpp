// libFuzzer target: what a peer sends, through the path a real message takes. The
// payload is deserialized as CAF's network layer does (caf::binary_deserializer over
// the bytes that came) and handed to the real actor or function that would take it:
//
//   0  (run_atom, job_spec, job_checkpoint) to a serve node's worker (remote, with
//      serve's limits), cancelled at once: its checks, its scratch folder, the
//      checkpoint into LibTorch's loader, the dataset spec;
//   1  a job_result's record files as the coordinator writes them into the job's
//      folder (names and contents from the peer);
//   2  (push_atom, param_blob) to a parameter holder, then a pull: whatever it took,
//      the holder's parameters stay finite;
//   3  (checkpoint_atom, job_checkpoint) to the coordinator's metric collector with
//      its file writers (the steps file, latest.pt, epoch_N.pt);
//   4  a whole caf::message of any registered type (what BASP deserializes).
//
// The first byte picks the mode, the rest is the payload. After every input nothing
// may exist in the scratch folder but the run's --out. A crash, a sanitizer report,
// more memory than -malloc_limit_mb or a hang is a finding.
//
// PNN_FUZZ_WRITE_SEEDS=DIR writes a valid input of every mode into DIR (the seeds in
// fuzz/corpus/peer/) and exits.

#include "fuzz_util.hpp"

#include <pnn/actors/metric_collector.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/actors/protocol.hpp>
#include <pnn/actors/training_worker.hpp>
#include <pnn/experiments/session.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace pnn;

namespace {

struct world {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  fs::path root; ///< only root/out may appear in it
  fs::path out;
  collector_actor collector;
  param_blob initial; ///< the holder's start

  world() {
    configure_actor_system(cfg, 1);
    sys = std::make_unique<caf::actor_system>(cfg);
    // Relative paths: the seeds' folders are valid in every fuzzing process.
    fs::current_path(pnn::fuzz::scratch());
    root = "run";
    out = root / "out";
    fs::create_directories(out);
    collector_options co;
    record_to_files(co, out);
    co.progress = "none";
    co.sample_interval = 3600;
    collector = spawn_collector(*sys, co);
    // A small model's worth (the holder checks layout, count and values, not which
    // model): small seeds keep the fuzzer fast.
    initial.layout = 0x5EED;
    initial.count = 64;
    initial.bytes.assign(initial.count * sizeof(float), 0);
  }
};

world& the_world() {
  static auto* w = new world; // never destroyed: libFuzzer exits with it running
  return *w;
}

template <class... Ts>
bool load(const uint8_t* data, size_t size, Ts&... xs) {
  caf::binary_deserializer source{*the_world().sys, reinterpret_cast<const char*>(data), size};
  return !source(xs...);
}

template <class... Ts>
std::vector<char> save(Ts&... xs) {
  std::vector<char> buf;
  caf::binary_serializer sink{*the_world().sys, buf};
  if (auto e = sink(xs...))
    std::abort();
  return buf;
}

job_spec seed_spec() {
  job_spec j;
  j.id = 3;
  j.model = "lenet5";
  j.scheduler = "cosine";
  j.dataset = "synthetic:train=64,test=8";
  j.folds = 2;
  j.fold = 1;
  j.epochs = 1;
  j.batch_size = 16;
  j.out_dir = (the_world().out / "lenet5" / "cosine" / "fold1").string();
  j.checkpoint_every = 1;
  return j;
}

/// 0: a serve node's worker takes the job and is told to cancel it at once.
void to_serve_worker(const job_spec& spec, const job_checkpoint& resume) {
  auto& w = the_world();
  worker_options o;
  o.remote = true;
  o.host = "fuzz";
  o.batches_per_slice = 1;
  o.limits.max_threads = 1;
  o.limits.max_checkpoint_bytes = 64 << 20;
  o.limits.restrict_data_dirs = true; // serve without --data-dir: no folder allowed
  auto worker = spawn_worker(*w.sys, w.collector, o);
  caf::scoped_actor self{*w.sys};
  auto answer = self->request(worker, caf::infinite, run_atom::value, spec, resume);
  self->send(worker, cancel_atom::value);
  answer.receive([](job_result&) {}, [](caf::error&) {});
  self->send_exit(worker, caf::exit_reason::user_shutdown);
}

/// 1: the record files of a result, into the job's folder.
void store_records(const job_result& r) {
  const auto dir = the_world().out / "lenet5" / "cosine" / "fold0";
  try {
    training::write_record_files(dir, r.files.names, r.files.contents);
  } catch (const pnn::error&) {
    // refused: a bad name, a size mismatch
  }
}

/// 2: a push to the holder, then a pull.
void to_holder(const param_blob& update) {
  auto& w = the_world();
  auto holder = spawn_holder(*w.sys, w.initial);
  caf::scoped_actor self{*w.sys};
  self->request(holder, caf::infinite, push_atom::value, update)
    .receive([](uint64_t) {}, [](caf::error&) {});
  self->request(holder, caf::infinite, pull_atom::value)
    .receive(
      [&](param_blob& now) {
        if (now.bytes.size() != w.initial.bytes.size())
          std::abort();
        for (size_t i = 0; i + sizeof(float) <= now.bytes.size(); i += sizeof(float)) {
          float v;
          std::memcpy(&v, now.bytes.data() + i, sizeof v);
          if (!std::isfinite(v)) {
            std::fprintf(stderr, "fuzz_peer: the holder took a push that made it non-finite\n");
            std::abort();
          }
        }
      },
      [](caf::error&) { std::abort(); });
  self->send_exit(holder, caf::exit_reason::user_shutdown);
}

/// 3: a checkpoint to the coordinator's collector (in-process sender: no assignment
/// check, the folder checks and the writers remain).
void to_collector(const job_checkpoint& c) {
  auto& w = the_world();
  caf::scoped_actor self{*w.sys};
  self->request(event_sink_actor{w.collector}, caf::infinite, checkpoint_atom::value, c)
    .receive([] {}, [](caf::error&) {});
}

/// Nothing but root/out in the scratch folder.
void check_nothing_outside() {
  const auto& w = the_world();
  for (const auto& e : fs::directory_iterator(w.root))
    if (e.path() != w.out) {
      std::fprintf(stderr, "fuzz_peer: %s written outside --out\n", e.path().c_str());
      std::abort();
    }
}

void write_seed(const fs::path& dir, const std::string& name, uint8_t mode,
                const std::vector<char>& payload) {
  std::ofstream f(dir / name, std::ios::binary);
  f.put(static_cast<char>(mode));
  f.write(payload.data(), static_cast<std::streamsize>(payload.size()));
}

void write_seeds(const fs::path& dir) {
  auto& w = the_world();
  fs::create_directories(dir);
  auto spec = seed_spec();
  job_checkpoint none;
  write_seed(dir, "serve-job", 0, save(spec, none));
  // A real checkpoint of the same job, with its steps.
  {
    auto model_spec = spec;
    model_spec.out_dir = (pnn::fuzz::scratch() / "seed-job").string();
    auto worker = spawn_worker(*w.sys, w.collector, {});
    caf::scoped_actor self{*w.sys};
    self->request(worker, caf::infinite, run_atom::value, model_spec)
      .receive([](job_result&) {}, [](caf::error&) {});
    self->send_exit(worker, caf::exit_reason::user_shutdown);
    std::ifstream in(fs::path{model_spec.out_dir} / "latest.pt", std::ios::binary);
    job_checkpoint c;
    c.id = spec.id;
    c.out_dir = spec.out_dir;
    c.epoch = 1;
    c.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    c.bytes.resize(std::min<size_t>(c.bytes.size(), 2048)); // its head: the loader's checks
    c.steps = training::read_steps_file(fs::path{model_spec.out_dir} / training::steps_file_name);
    write_seed(dir, "serve-resume", 0, save(spec, c));
    write_seed(dir, "collector-checkpoint", 3, save(c));
    c.steps_from = 2;
    c.steps = c.steps.substr(2 * training::step_record_bytes);
    c.epoch = 2;
    write_seed(dir, "collector-checkpoint-delta", 3, save(c));
    job_result r;
    r.id = spec.id;
    r.files.names = {"steps.csv", "metrics.json"};
    r.files.contents = {"time,epoch,batch,step,loss,lr\n0,0,0,0,2.3,0.001\n", "{\"ok\": true}\n"};
    write_seed(dir, "result-files", 1, save(r));
    caf::message m = caf::make_message(result_atom::value, r);
    write_seed(dir, "message-result", 4, save(m));
    m = caf::make_message(checkpoint_atom::value, c);
    write_seed(dir, "message-checkpoint", 4, save(m));
  }
  auto update = w.initial;
  const float step = 0.25f;
  for (size_t i = 0; i < update.count; ++i)
    std::memcpy(update.bytes.data() + i * sizeof(float), &step, sizeof step);
  write_seed(dir, "holder-push", 2, save(update));
  caf::message m = caf::make_message(push_atom::value, update);
  write_seed(dir, "message-push", 4, save(m));
  m = caf::make_message(run_atom::value, spec);
  write_seed(dir, "message-job", 4, save(m));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("PNN_FUZZ_WRITE_SEEDS")) {
    write_seeds(fs::absolute(dir)); // before the world moves into its scratch folder
    std::exit(0);
  }
  the_world();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  const uint8_t mode = data[0] % 5;
  ++data;
  --size;
  switch (mode) {
    case 0: {
      job_spec spec;
      job_checkpoint resume;
      if (load(data, size, spec, resume))
        to_serve_worker(spec, resume);
      break;
    }
    case 1: {
      job_result r;
      if (load(data, size, r))
        store_records(r);
      break;
    }
    case 2: {
      param_blob update;
      if (load(data, size, update))
        to_holder(update);
      break;
    }
    case 3: {
      job_checkpoint c;
      if (load(data, size, c))
        to_collector(c);
      break;
    }
    default: {
      caf::message m;
      load(data, size, m);
      break;
    }
  }
  check_nothing_outside();
  return 0;
}
