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
//   ./build/examples/distributed_mnist [--workers N] [--epochs N] [--subset N] [--data-dir DIR]
//                                      [--out DIR] [--hosts h:p,... [--n-push N] [--n-pull N]]
#include <pnn/experiments/distributed.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/error.hpp>
#include <pnn/models/registry.hpp>
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
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 < argc && flag == "--workers") {
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
      std::fprintf(stderr, "distributed_mnist: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  try {
    auto data = pnn::training::load_dataset("fashion-mnist", data_dir, subset);
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
      o.dataset = "fashion-mnist";
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
