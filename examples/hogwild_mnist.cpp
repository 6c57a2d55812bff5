// HOGWILD on Fashion-MNIST: LeNet5 trained by one worker per core, all updating one
// shared set of parameters without locks, then tested. Run it with --workers 1 for
// plain SGD through the same code path and compare the two summaries.
//
//   ./build/examples/hogwild_mnist [--workers N] [--epochs N] [--subset N] [--data-dir DIR]
//                                  [--synthetic] [--out DIR]
//
// --synthetic trains on generated MNIST-shaped data instead (a quick check: seconds).
#include <pnn/experiments/hogwild.hpp>
#include <pnn/error.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  pnn::configure_allocator();
  pnn::hogwild_options o;
  o.dataset = "fashion-mnist";
  o.model = "lenet5";
  o.epochs = 2;
  o.out = "runs/hogwild_mnist";
  bool synthetic = false;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("workers", po::value(&o.workers)->default_value(0),
       "workers sharing the parameters (0: one per core)");
  flag("epochs", po::value(&o.epochs)->default_value(o.epochs), "epochs over the training set");
  flag("subset", po::value(&o.subset)->default_value(0),
       "use the first N training samples (0: all)");
  flag("data-dir", po::value(&o.data_dir), "folder of the Fashion-MNIST idx files");
  flag("synthetic", po::bool_switch(&synthetic), "generated MNIST-shaped data instead");
  flag("out", po::value(&o.out)->default_value(o.out), "folder for the results");
  if (int code = pnn::runtime::parse_program_flags(
        "hogwild_mnist",
        "[--workers N] [--epochs N] [--subset N] [--data-dir DIR | --synthetic] [--out DIR]",
        "LeNet5 trained HOGWILD by one worker per core on shared parameters, then tested.", flags,
        argc, argv);
      code >= 0)
    return code;
  if (synthetic && !o.data_dir.empty()) {
    std::fprintf(stderr, "hogwild_mnist: --synthetic: generated data reads no --data-dir\n");
    return 2;
  }
  if (synthetic)
    o.dataset = "synthetic";
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
