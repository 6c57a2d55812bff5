// HOGWILD on Fashion-MNIST: LeNet5 trained by one worker per core, all updating one
// shared set of parameters without locks, then tested. Run it with --workers 1 for
// plain SGD through the same code path and compare the two summaries.
//
//   ./build/examples/hogwild_mnist [--workers N] [--epochs N] [--subset N] [--data-dir DIR] [--out DIR]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/error.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  pnn::hogwild_options o;
  o.dataset = "fashion-mnist";
  o.model = "lenet5";
  o.epochs = 2;
  o.out = "runs/hogwild_mnist";
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 < argc && flag == "--workers") {
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
      std::fprintf(stderr, "hogwild_mnist: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  try {
    auto r = pnn::run_hogwild(o);
    std::printf("\n%zu worker(s): test accuracy %.4f, %.0f samples/s, training %.1f s, "
                "mean CPU utilisation %.1f%%\nresults in %s (loss.csv: loss against time)\n",
                r.workers.size(), r.test_accuracy, r.samples_per_second, r.train_seconds,
                100 * r.cpu_utilization_mean, o.out.c_str());
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "hogwild_mnist: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
