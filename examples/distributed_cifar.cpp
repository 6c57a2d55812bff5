// The reference's distributed CIFAR-10 scenario in pnn: a VGG-style network (VGG11
// by default; SGD with momentum, cosine schedule) with random crop + flip +
// normalisation, then a test. On one host it is HOGWILD (one worker per core on
// shared parameters); with --hosts h:p,... it is distributed SGD through a
// parameter holder held here, one worker per slot of every `pnn-node serve` host
// (give each host its CIFAR-10 copy with `serve --data-dir DIR`). CIFAR-10 cannot be
// downloaded here: --data-dir with its binary batches, or --synthetic for generated
// CIFAR-shaped data (every host generates the same).
//
//   ./build/examples/distributed_cifar --data-dir DIR | --synthetic [--model vgg11]
//        [--workers N] [--epochs N] [--subset N] [--out DIR] [--hosts h:p,... [--n-push N] [--n-pull N]]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/error.hpp>
#include <pnn/system.hpp>

#include <algorithm>
#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  std::string model = "vgg11", data_dir, out = "runs/distributed_cifar", hosts;
  int workers = 0, n_push = 5, n_pull = 5;
  int64_t epochs = 1, subset = 0;
  bool synthetic = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--synthetic") {
      synthetic = true;
    } else if (i + 1 < argc && flag == "--model") {
      model = argv[++i];
    } else if (i + 1 < argc && flag == "--workers") {
      workers = std::stoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--epochs") {
      epochs = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--subset") {
      subset = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--data-dir") {
      data_dir = argv[++i];
    } else if (i + 1 < argc && flag == "--out") {
      out = argv[++i];
    } else if (i + 1 < argc && flag == "--hosts") {
      hosts = argv[++i];
    } else if (i + 1 < argc && flag == "--n-push") {
      n_push = std::stoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--n-pull") {
      n_pull = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr, "distributed_cifar: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (synthetic == !data_dir.empty()) {
    std::fprintf(stderr,
                 "distributed_cifar: expected --data-dir DIR (CIFAR-10 binary batches) "
                 "or --synthetic\n");
    return 2;
  }
  const std::string dataset = synthetic ? "synthetic-cifar" : "cifar10";
  try {
    if (hosts.empty()) {
      pnn::hogwild_options o;
      o.dataset = dataset;
      o.data_dir = data_dir;
      o.subset = subset;
      o.model = model;
      o.workers = workers;
      o.optimizer = "sgd:momentum=0.9";
      o.lr = 0.01;
      o.scheduler = "cosine";
      o.epochs = epochs;
      o.out = out;
      auto r = pnn::run_hogwild(o);
      std::printf("HOGWILD, %zu worker(s): %.0f samples/s, test accuracy %.4f (results in %s)\n",
                  r.workers.size(), r.samples_per_second, r.test_accuracy, out.c_str());
    } else {
      pnn::sgd_options o;
      o.dataset = dataset;
      o.data_dir = data_dir;
      o.subset = subset;
      o.model = model;
      o.use_local = false;
      for (size_t at = 0; at <= hosts.size();) {
        auto comma = std::min(hosts.find(',', at), hosts.size());
        o.hosts.push_back(hosts.substr(at, comma - at));
        at = comma + 1;
      }
      o.n_push = n_push;
      o.n_pull = n_pull;
      o.optimizer = "sgd:momentum=0.9";
      o.lr = 0.01;
      o.scheduler = "cosine";
      o.epochs = epochs;
      o.out = out;
      auto r = pnn::run_sgd(o);
      std::printf("distributed SGD, %zu worker(s) on %zu host(s): %.0f samples/s, %llu updates "
                  "applied, test accuracy %.4f (results in %s)\n",
                  r.workers.size(), o.hosts.size(), r.samples_per_second,
                  static_cast<unsigned long long>(r.holder.applied), r.test_accuracy, out.c_str());
    }
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "distributed_cifar: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
