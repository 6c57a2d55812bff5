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
#include <pnn/runtime/program_flags.hpp>
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
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("data-dir", po::value(&data_dir),
       "folder of CIFAR-10's binary batches (data_batch_1..5.bin, test_batch.bin)");
  flag("synthetic", po::bool_switch(&synthetic), "generated CIFAR-shaped data instead");
  flag("model", po::value(&model)->default_value(model), "vgg11, vgg13, vgg16, vgg19, ...");
  flag("workers", po::value(&workers)->default_value(workers),
       "workers on this host (0: one per core)");
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs over the training set");
  flag("subset", po::value(&subset)->default_value(subset),
       "use the first N training samples (0: all)");
  flag("out", po::value(&out)->default_value(out), "folder for the results");
  flag("hosts", po::value(&hosts), "train on these `pnn-node serve` hosts instead (h:p,...)");
  flag("n-push", po::value(&n_push)->default_value(n_push), "with --hosts: push every N steps");
  flag("n-pull", po::value(&n_pull)->default_value(n_pull), "with --hosts: pull every N steps");
  if (int code = pnn::runtime::parse_program_flags(
        "distributed_cifar",
        "--data-dir DIR | --synthetic [--model vgg11] [--workers N] [--epochs N] [--subset N]\n"
        "                         [--out DIR] [--hosts h:p,... [--n-push N] [--n-pull N]]",
        "A VGG-style network on CIFAR-10: HOGWILD on this host, or distributed SGD through a\n"
        "parameter holder across serve hosts (--hosts), then tested.",
        flags, argc, argv);
      code >= 0)
    return code;
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
