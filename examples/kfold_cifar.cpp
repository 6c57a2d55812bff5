// K-fold on CIFAR-10: MobileNet, LeNet and VGG11 x cosine, warm, K=2, with random
// crop + flip + normalisation. CIFAR-10 cannot be downloaded here: give the folder
// of its binary batches with --data-dir, or --synthetic for generated CIFAR-shaped data.
//
//   ./build/examples/kfold_cifar --data-dir DIR | --synthetic [--epochs N] [--subset N] [--out DIR]
#include <pnn/experiments/async_kfold.hpp>
#include <pnn/error.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  int64_t epochs = 1, subset = 0;
  std::string data_dir, out = "runs/kfold_cifar";
  bool synthetic = false;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("data-dir", po::value(&data_dir),
       "folder of CIFAR-10's binary batches (data_batch_1..5.bin, test_batch.bin)");
  flag("synthetic", po::bool_switch(&synthetic), "generated CIFAR-shaped data instead");
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs per fold");
  flag("subset", po::value(&subset)->default_value(subset),
       "use the first N training samples (0: all)");
  flag("out", po::value(&out)->default_value(out), "folder for the results");
  if (int code = pnn::runtime::parse_program_flags(
        "kfold_cifar", "--data-dir DIR | --synthetic [--epochs N] [--subset N] [--out DIR]",
        "K-fold on CIFAR-10: MobileNet, LeNet and VGG11 x cosine, warm, K=2, augmented.", flags,
        argc, argv);
      code >= 0)
    return code;
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
