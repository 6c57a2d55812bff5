// The reference's distributed MNIST scenario in pnn: LeNet5 on Fashion-MNIST, Adam,
// MultiStepLR, trained HOGWILD-style by DistributedTrainer (one worker per core on
// shared parameters), then tested by DistributedTester (accuracy + confusion matrix
// written to the run folder).
//
// With --hosts h:p,... the same model is trained across hosts instead: every host
// runs `pnn-node serve`, this program holds the parameters (a parameter holder)
// and every slot of every host runs a worker that pulls and pushes them every
// --n-pull / --n-push steps (run_sgd); then DistributedTester tests the result here.
//
//   ./build/examples/distributed_mnist [--workers N] [--epochs N] [--subset N]
//                                      [--data-dir DIR | --synthetic] [--out DIR]
//                                      [--hosts h:p,... [--n-push N] [--n-pull N]]
//
// --synthetic trains on generated MNIST-shaped data instead (a quick check: seconds).
#include <pnn/experiments/distributed.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/error.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/system.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  int workers = 0; // one per core
  int64_t epochs = 4, subset = 0;
  std::string data_dir, out = "runs/distributed_mnist", hosts;
  int n_push = 5, n_pull = 5;
  bool synthetic = false;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("workers", po::value(&workers)->default_value(workers),
       "workers on this host (0: one per core)");
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs over the training set");
  flag("subset", po::value(&subset)->default_value(subset),
       "use the first N training samples (0: all)");
  flag("data-dir", po::value(&data_dir), "folder of the Fashion-MNIST idx files");
  flag("synthetic", po::bool_switch(&synthetic), "generated MNIST-shaped data instead");
  flag("out", po::value(&out)->default_value(out), "folder for the results");
  flag("hosts", po::value(&hosts), "train on these `pnn-node serve` hosts instead (h:p,...)");
  flag("n-push", po::value(&n_push)->default_value(n_push), "with --hosts: push every N steps");
  flag("n-pull", po::value(&n_pull)->default_value(n_pull), "with --hosts: pull every N steps");
  if (int code = pnn::runtime::parse_program_flags(
        "distributed_mnist",
        "[--workers N] [--epochs N] [--subset N] [--data-dir DIR | --synthetic] [--out DIR]\n"
        "                         [--hosts h:p,... [--n-push N] [--n-pull N]]",
        "LeNet5, Adam, MultiStepLR: trained by DistributedTrainer (HOGWILD on this host) or\n"
        "across serve hosts through a parameter holder (--hosts), then tested.",
        flags, argc, argv);
      code >= 0)
    return code;
  if (synthetic && !data_dir.empty()) {
    std::fprintf(stderr, "distributed_mnist: --synthetic: generated data reads no --data-dir\n");
    return 2;
  }
  const std::string dataset = synthetic ? "synthetic" : "fashion-mnist";
  try {
    auto data = pnn::training::load_dataset(dataset, data_dir, subset);
    auto model =
      pnn::models::make_model("lenet5", data.train->channels(), data.train->num_classes());
    auto criterion = [](const torch::Tensor& logits, const torch::Tensor& labels) {
      return torch::nn::functional::cross_entropy(logits, labels);
    };
    auto get_optimizer = [](std::vector<torch::Tensor> parameters) {
      return std::make_unique<torch::optim::Adam>(parameters, torch::optim::AdamOptions(1e-3));
    };
    // MultiStepLR(milestones=[epochs/2, 3*epochs/4], gamma=0.1), stepped per epoch.
    const std::string scheduler =
      "multistep:milestones=" + std::to_string(std::max<int64_t>(1, epochs / 2)) + "/"
      + std::to_string(std::max<int64_t>(1, 3 * epochs / 4)) + ",gamma=0.1,unit=epoch";

    if (hosts.empty()) {
      pnn::DistributedTrainer trainer(workers, criterion, out, 32);
      auto report = trainer(model, data.train, get_optimizer, scheduler, epochs);
      std::printf("trained with %zu worker(s) in %.1f s (%.0f samples/s), final train loss %.4f\n",
                  report.workers.size(), report.train_seconds, report.samples_per_second,
                  report.final_train_loss);
    } else {
      // Across hosts: functions do not travel, so the remote workers use the same
      // choices by name (Adam 1e-3, the MultiStepLR spec, cross-entropy).
      pnn::sgd_options o;
      o.dataset = dataset;
      o.subset = subset;
      o.initial_model = model; // receives the trained parameters
      o.use_local = false;     // this host holds the parameters; the hosts train
      for (size_t at = 0; at <= hosts.size();) {
        auto comma = std::min(hosts.find(',', at), hosts.size());
        o.hosts.push_back(hosts.substr(at, comma - at));
        at = comma + 1;
      }
      o.n_push = n_push;
      o.n_pull = n_pull;
      o.optimizer = "adam";
      o.lr = 1e-3;
      o.scheduler = scheduler;
      o.epochs = epochs;
      o.out = out;
      o.test = false; // the tester below does it, as in the single-host scenario
      auto report = pnn::run_sgd(o);
      std::printf("trained with %zu worker(s) on %zu host(s) in %.1f s (%.0f samples/s), "
                  "%llu updates applied, final train loss %.4f\n",
                  report.workers.size(), o.hosts.size(), report.train_seconds,
                  report.samples_per_second, static_cast<unsigned long long>(report.holder.applied),
                  report.final_train_loss);
    }

    pnn::DistributedTester tester(data.test, out, 256);
    auto result = tester(*model);
    std::printf("test accuracy %.4f on %lld images (confusion.csv, test.json in %s)\n",
                result.accuracy, static_cast<long long>(result.samples), out.c_str());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "distributed_mnist: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
