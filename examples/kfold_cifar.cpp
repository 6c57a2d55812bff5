// K-fold on CIFAR-10: MobileNet, LeNet and VGG11 x cosine, warm, K=2, with random
// crop + flip + normalisation. CIFAR-10 cannot be downloaded here: give the folder
// of its binary batches with --data-dir, or --synthetic for generated CIFAR-shaped data.
//
//   ./build/examples/kfold_cifar --data-dir DIR | --synthetic [--epochs N] [--subset N] [--out DIR]
#include <pnn/experiments/async_kfold.hpp>
#include <pnn/error.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  int64_t epochs = 1, subset = 0;
  std::string data_dir, out = "runs/kfold_cifar";
  bool synthetic = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--synthetic") {
      synthetic = true;
    } else if (i + 1 < argc && flag == "--epochs") {
      epochs = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--subset") {
      subset = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--data-dir") {
      data_dir = argv[++i];
    } else if (i + 1 < argc && flag == "--out") {
      out = argv[++i];
    } else {
      std::fprintf(stderr, "kfold_cifar: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (!synthetic && data_dir.empty()) {
    std::fprintf(stderr,
                 "kfold_cifar: CIFAR-10 is not available here: give --data-dir DIR "
                 "(data_batch_1..5.bin, test_batch.bin) or --synthetic\n");
    return 2;
  }
  try {
    pnn::AsyncKFold kfold(2, synthetic ? "synthetic-cifar" : "cifar10", out, {}, 32, true);
    kfold.options().data_dir = data_dir;
    kfold.options().subset = subset;
    auto report =
      kfold({"mobilenet", "lenet", "vgg11"}, {"cosine", "warm"}, {}, {epochs, 1, "auto"});
    std::printf("\n%s\nwall time %.1f s, mean CPU utilisation %.1f%%, results in %s\n",
                pnn::format_table(report).c_str(), report.wall_seconds,
                100 * report.cpu_utilization_mean, out.c_str());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "kfold_cifar: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
