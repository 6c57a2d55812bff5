// K-fold cross-validation like the reference's MNIST scenario: LeNet5 and AlexNet x
// cosine, K=2, Adam 1e-3, batch 32, through the AsyncKFold API. Fashion-MNIST by
// default, real MNIST from --data-dir.
//
//   ./build/examples/kfold_mnist [--epochs N] [--subset N] [--data-dir DIR | --synthetic] [--out DIR]
//                                [--serial]
#include <pnn/experiments/async_kfold.hpp>
#include <pnn/error.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/system.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  int64_t epochs = 1, subset = 0;
  std::string data_dir, out = "runs/kfold_mnist";
  bool serial = false;
  bool synthetic = false;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs per fold");
  flag("subset", po::value(&subset)->default_value(subset),
       "use the first N training samples (0: all)");
  flag("data-dir", po::value(&data_dir),
       "folder of real MNIST's idx files (default: Fashion-MNIST)");
  flag("synthetic", po::bool_switch(&synthetic), "generated MNIST-shaped data instead");
  flag("out", po::value(&out)->default_value(out), "folder for the results");
  flag("serial", po::bool_switch(&serial), "one fold after another (to compare with)");
  if (int code = pnn::runtime::parse_program_flags(
        "kfold_mnist",
        "[--epochs N] [--subset N] [--data-dir DIR | --synthetic] [--out DIR] [--serial]",
        "K-fold cross-validation, LeNet5 and AlexNet x cosine, K=2, through AsyncKFold.", flags,
        argc, argv);
      code >= 0)
    return code;
  if (synthetic && !data_dir.empty()) {
    std::fprintf(stderr, "kfold_mnist: --synthetic: generated data reads no --data-dir\n");
    return 2;
  }
  const std::string dataset = synthetic ? "synthetic"
    : data_dir.empty()                  ? "fashion-mnist"
                                        : "mnist";
  try {
    pnn::AsyncKFold kfold(2, dataset, out, pnn::training::cross_entropy(), 32,
                          /*parallelize=*/!serial);
    kfold.options().data_dir = data_dir;
    kfold.options().subset = subset;
    auto get_optimizer = [](std::vector<torch::Tensor> params) {
      return std::make_unique<torch::optim::Adam>(std::move(params),
                                                  torch::optim::AdamOptions(1e-3));
    };
    auto report = kfold({"lenet5", "alexnet"}, {"cosine"}, get_optimizer, {epochs, 0, "auto"});
    std::printf("\n%s\nwall time %.1f s, mean CPU utilisation %.1f%%, results in %s\n",
                pnn::format_table(report).c_str(), report.wall_seconds,
                100 * report.cpu_utilization_mean, out.c_str());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "kfold_mnist: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
