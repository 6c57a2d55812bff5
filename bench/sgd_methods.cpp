// Distributed SGD methods side by side, measured as a user would run them: test
// accuracy at equal epochs against one job, and samples/s.
//   baseline:  `pnn-node train` (one job, the same model, data, optimizer, schedule);
//   for every method x workers x n (n_push = n_pull = n) x placement x seed: run_sgd.
// Methods (sgd flags): workers (each worker's optimizer; the holder merges their
// deltas as --merge says, "+sum" or "+average", the default), holder (--optimizer-on
// holder); "+sync" adds --sync (rounds), "+scale" --staleness-scaling, "+boundS"
// --max-staleness S, "+lrX" multiplies --lr by X, "+postE" --local-after E
// (post-local SGD), "+warmE" --scheduler cosine:warmup=E, "+shardsS" --holder-shards S,
// "+fp16", "+bf16", "+topkF" --compress (topk:F).
// Placements: local (W workers in this process) or serve (two `pnn-node serve`
// processes on 127.0.0.1 with W/2 slots each, no local workers).
// Prints JSON: every run, and per configuration the mean test accuracy over the
// seeds, its difference to the one job's, samples/s and staleness.
// `--large-batch SCHEDULER` also trains, per W, one job at the batch W synchronous workers
// make (32 W, W x --lr, that schedule, e.g. cosine:warmup=0.75): the large-batch
// bound at equal epochs, in "large_batch_bound" by W.
//
// usage: bench_sgd_methods [--subset N] [--epochs E] [--workers 2,4,8] [--n 1,5,20]
//          [--methods workers,holder] [--placements local,serve] [--seeds 1,2]
//          [--large-batch SCHEDULER] [--out DIR]
#include <pnn/experiments/sgd.hpp>
#include <pnn/system.hpp>
#include "bench_args.hpp"
#include "serve_process.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace pnn;
using pnn::bench::mean;
using pnn::bench::serve_process;
using pnn::bench::split;
namespace fs = std::filesystem;

namespace {

struct common {
  int64_t subset = 20000, epochs = 2;
  double lr = 1e-3;
};

/// One job through `pnn-node train`: its test accuracy. `workers` > 1: the large
/// batch W synchronous workers make (batch 32 W at W x --lr, as --sync runs them),
/// with the schedule `scheduler`.
double one_job(const common& c, uint64_t seed, const fs::path& out, int workers = 1,
               const std::string& scheduler = "cosine") {
  std::ostringstream cmd;
  cmd << PNN_NODE_PATH << " train --dataset fashion-mnist --model lenet5 --optimizer adam --lr "
      << c.lr * workers << " --scheduler " << scheduler << " --epochs " << c.epochs
      << " --batch-size " << 32 * workers << " --subset " << c.subset
      << " --threads 1 --seed " << seed << " --progress none --out " << out
      << " > /dev/null 2>&1";
  if (std::system(cmd.str().c_str()) != 0)
    throw std::runtime_error("pnn-node train failed: " + cmd.str());
  std::ifstream in(out / "summary.json");
  return nlohmann::json::parse(in).at("test_accuracy").get<double>();
}

/// Applies a method name ("holder+scale+bound2+lr0.5") to `o`.
void apply_method(const std::string& method, sgd_options& o) {
  std::string rest = method;
  size_t plus = rest.find('+');
  const std::string base = rest.substr(0, plus);
  if (base != "workers" && base != "holder")
    throw std::runtime_error("unknown method " + method);
  o.optimizer_on = base;
  o.merge = base == "workers" ? "average" : "sum";
  while (plus != std::string::npos) {
    const size_t next = rest.find('+', plus + 1);
    const std::string mod = rest.substr(plus + 1, next == std::string::npos ? next : next - plus - 1);
    if (mod == "scale")
      o.staleness_scaling = true;
    else if (mod == "average")
      o.merge = "average";
    else if (mod == "sum")
      o.merge = "sum";
    else if (mod == "sync") {
      o.sync = true;
      o.merge = "average";
    }
    else if (mod.rfind("bound", 0) == 0)
      o.max_staleness = std::stoi(mod.substr(5));
    else if (mod == "fp16" || mod == "bf16")
      o.compress = mod;
    else if (mod.rfind("topk", 0) == 0)
      o.compress = "topk:" + mod.substr(4);
    else if (mod.rfind("shards", 0) == 0)
      o.holder_shards = std::stoi(mod.substr(6));
    else if (mod.rfind("lr", 0) == 0)
      o.lr *= std::stod(mod.substr(2));
    else if (mod.rfind("post", 0) == 0)
      o.local_after = std::stod(mod.substr(4));
    else if (mod.rfind("warm", 0) == 0)
      o.scheduler +=
        (o.scheduler.find(':') == std::string::npos ? ":warmup=" : ",warmup=") + mod.substr(4);
    else
      throw std::runtime_error("unknown modifier " + mod + " in " + method);
    plus = next;
  }
}

} // namespace

int main(int argc, char** argv) {
  using pnn::bench::number;
  using pnn::bench::numbers;
  const char* name = "bench_sgd_methods";
  pnn::configure_allocator();
  common c;
  std::vector<std::string> workers{"2", "4", "8"}, ns{"1", "5", "20"}, methods{"workers", "holder"},
    placements{"local"}, seeds{"1"};
  fs::path out = fs::temp_directory_path() / "pnn-bench-sgd-methods";
  std::string large_batch; // schedule of the large-batch one jobs ("": none)
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--help" || i + 1 == argc) {
      std::cerr << (flag == "--help" ? "" : "bench_sgd_methods: " + flag + " needs a value\n")
                << "usage: bench_sgd_methods [--subset N] [--epochs E] [--workers 2,4,8] [--n 1,5,20]\n"
                   "         [--methods workers,holder,workers+sync,...] [--placements local,serve]\n"
                   "         [--seeds 1,2] [--large-batch SCHEDULER] [--out DIR]\n";
      return flag == "--help" ? 0 : 2;
    }
    std::string value = argv[i + 1];
    if (flag == "--subset")
      c.subset = number<int64_t>(name, flag, value);
    else if (flag == "--epochs")
      c.epochs = number<int64_t>(name, flag, value);
    else if (flag == "--workers") {
      numbers<int>(name, flag, value); // each a number, or a one-line error and exit 2
      workers = split(value);
    }
    else if (flag == "--n") {
      numbers<int>(name, flag, value); // each a number, or a one-line error and exit 2
      ns = split(value);
    }
    else if (flag == "--methods")
      methods = split(value);
    else if (flag == "--placements")
      placements = split(value);
    else if (flag == "--seeds") {
      numbers<uint64_t>(name, flag, value); // each a number, or a one-line error and exit 2
      seeds = split(value);
    }
    else if (flag == "--large-batch")
      large_batch = value;
    else if (flag == "--out")
      out = value;
    else {
      std::cerr << "bench_sgd_methods: unknown flag " << flag << "\n";
      return 2;
    }
  }
  fs::remove_all(out);
  nlohmann::json result{{"bench", "sgd_methods"},
                        {"model", "lenet5"},
                        {"dataset", "fashion-mnist"},
                        {"subset", c.subset},
                        {"epochs", c.epochs},
                        {"batch_size", 32},
                        {"optimizer", "adam lr 1e-3, cosine"},
                        {"cores", pnn::available_cores()},
                        {"seeds", seeds}};
  std::vector<double> base;
  for (const auto& s : seeds) {
    base.push_back(one_job(c, std::stoull(s), out / ("train_s" + s)));
    std::cerr << "one job, seed " << s << ": " << base.back() << "\n";
  }
  result["one_job_test_accuracy"] = base;
  result["one_job_test_accuracy_mean"] = mean(base);
  if (!large_batch.empty()) {
    nlohmann::json bounds = nlohmann::json::object();
    for (const auto& w : workers) {
      std::vector<double> acc;
      for (const auto& s : seeds) {
        acc.push_back(
          one_job(c, std::stoull(s), out / ("batch_w" + w + "_s" + s), std::stoi(w), large_batch));
        std::cerr << "one job at batch " << 32 * std::stoi(w) << ", seed " << s << ": "
                  << acc.back() << "\n";
      }
      bounds[w] = {{"batch_size", 32 * std::stoi(w)},
                   {"lr", c.lr * std::stoi(w)},
                   {"scheduler", large_batch},
                   {"test_accuracy", acc},
                   {"test_accuracy_mean", mean(acc)},
                   {"points_below_one_job", 100 * (mean(base) - mean(acc))}};
    }
    result["large_batch_bound"] = bounds;
  }
  nlohmann::json configs = nlohmann::json::array();
  for (const auto& placement : placements)
    for (const auto& w : workers)
      for (const auto& n : ns)
        for (const auto& method : methods) {
          std::vector<double> acc, sps, stale;
          uint64_t stale_max = 0;
          for (const auto& s : seeds) {
            sgd_options o;
            o.dataset = "fashion-mnist";
            o.subset = c.subset;
            o.model = "lenet5";
            o.optimizer = "adam";
            o.lr = c.lr;
            o.scheduler = "cosine";
            o.epochs = c.epochs;
            o.batch_size = 32;
            o.seed = std::stoull(s);
            o.n_push = o.n_pull = std::stoi(n);
            o.threads_per_worker = 1;
            o.progress = "none";
            apply_method(method, o);
            o.out = out / (placement + "_w" + w + "_n" + n + "_" + method + "_s" + s);
            const int nw = std::stoi(w);
            std::vector<std::unique_ptr<serve_process>> servers;
            if (placement == "serve") {
              if (nw / 2 > 0)
                servers.push_back(std::make_unique<serve_process>(nw / 2));
              servers.push_back(std::make_unique<serve_process>(nw - nw / 2));
              o.use_local = false;
              for (const auto& sp : servers)
                o.hosts.push_back(sp->address());
            } else {
              o.slots = nw;
            }
            auto r = run_sgd(o);
            servers.clear();
            acc.push_back(r.test_accuracy);
            sps.push_back(r.samples_per_second);
            const auto& sm = r.summary["staleness_mean"];
            stale.push_back(sm.is_number() ? sm.get<double>() : NAN);
            stale_max = std::max(stale_max, r.summary.value("staleness_max", uint64_t{0}));
            std::cerr << placement << " " << w << " workers, n " << n << ", " << method
                      << ", seed " << s << ": test accuracy " << r.test_accuracy << ", "
                      << r.samples_per_second << " samples/s, staleness "
                      << stale.back() << "\n";
          }
          configs.push_back({{"placement", placement},
                             {"workers", std::stoi(w)},
                             {"n", std::stoi(n)},
                             {"method", method},
                             {"test_accuracy", acc},
                             {"test_accuracy_mean", mean(acc)},
                             {"points_below_one_job", 100 * (mean(base) - mean(acc))},
                             {"samples_per_second_mean", mean(sps)},
                             {"staleness_mean", mean(stale)},
                             {"staleness_max", stale_max}});
        }
  result["runs"] = configs;
  std::cout << result.dump(2) << std::endl;
  return 0;
}
