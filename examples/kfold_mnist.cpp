// K-fold cross-validation like the reference's MNIST scenario: LeNet5 and AlexNet x
// cosine, K=2, Adam 1e-3, batch 32, through the AsyncKFold API. Fashion-MNIST by
// default, real MNIST from --data-dir.
//
//   ./build/examples/kfold_mnist [--epochs N] [--subset N] [--data-dir DIR] [--out DIR] [--serial]
#include <pnn/experiments/async_kfold.hpp>
#include <pnn/error.hpp>
#include <pnn/system.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  int64_t epochs = 1, subset = 0;
  std::string data_dir, out = "runs/kfold_mnist";
  bool serial = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--serial") {
      serial = true;
    } else if (i + 1 < argc && flag == "--epochs") {
      epochs = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--subset") {
      subset = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--data-dir") {
      data_dir = argv[++i];
    } else if (i + 1 < argc && flag == "--out") {
      out = argv[++i];
    } else {
      std::fprintf(stderr,
                   "kfold_mnist: unknown flag %s (expected --epochs N, --subset N, "
                   "--data-dir DIR, --out DIR, --serial)\n",
                   argv[i]);
      return 2;
    }
  }
  try {
    pnn::AsyncKFold kfold(2, data_dir.empty() ? "fashion-mnist" : "mnist", out,
                          pnn::training::cross_entropy(), 32, /*parallelize=*/!serial);
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
