// HOGWILD on CIFAR-10: a VGG-style network (VGG11 by default) trained by one worker
// per core on shared parameters, with random crop + flip + normalisation, then
// tested. CIFAR-10 cannot be downloaded here: give the folder of its binary batches
// with --data-dir, or --synthetic for generated CIFAR-shaped data.
//
//   ./build/examples/hogwild_cifar --data-dir DIR | --synthetic [--model vgg11] [--workers N]
//                                  [--epochs N] [--subset N] [--out DIR]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/error.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  pnn::hogwild_options o;
  o.model = "vgg11";
  o.epochs = 1;
  o.optimizer = "sgd:momentum=0.9";
  o.lr = 0.01;
  o.scheduler = "cosine";
  o.out = "runs/hogwild_cifar";
  bool synthetic = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--synthetic") {
      synthetic = true;
    } else if (i + 1 < argc && flag == "--model") {
      o.model = argv[++i];
    } else if (i + 1 < argc && flag == "--workers") {
      o.workers = std::stoi(argv[++i]);
    } else if (i + 1 < argc && flag == "--epochs") {
      o.epochs = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--subset") {
      o.subset = std::stoll(argv[++i]);
    } else if (i + 1 < argc && flag == "--data-dir") {
      o.data_dir = argv[++i];
    } else if (i + 1 < argc && flag == "--out") {
      o.out = argv[++i];
    } else {
      std::fprintf(stderr, "hogwild_cifar: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (!synthetic && o.data_dir.empty()) {
    std::fprintf(stderr,
                 "hogwild_cifar: CIFAR-10 is not available here: give --data-dir DIR "
                 "(data_batch_1..5.bin, test_batch.bin) or --synthetic\n");
    return 2;
  }
  o.dataset = synthetic ? "synthetic-cifar" : "cifar10";
  try {
    auto r = pnn::run_hogwild(o);
    std::printf("\n%s, %zu worker(s): test accuracy %.4f, %.0f samples/s, training %.1f s, "
                "mean CPU utilisation %.1f%%\nresults in %s\n",
                o.model.c_str(), r.workers.size(), r.test_accuracy, r.samples_per_second,
                r.train_seconds, 100 * r.cpu_utilization_mean, o.out.c_str());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "hogwild_cifar: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
