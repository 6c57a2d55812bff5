// HOGWILD on CIFAR-10: a VGG-style network (VGG11 by default) trained by one worker
// per core on shared parameters, with random crop + flip + normalisation, then
// tested. CIFAR-10 cannot be downloaded here: give the folder of its binary batches
// with --data-dir, or --synthetic for generated CIFAR-shaped data.
//
//   ./build/examples/hogwild_cifar --data-dir DIR | --synthetic [--model vgg11] [--workers N]
//                                  [--epochs N] [--subset N] [--out DIR]
#include <pnn/experiments/hogwild.hpp>
#include <pnn/error.hpp>
#include <pnn/runtime/program_flags.hpp>
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
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("data-dir", po::value(&o.data_dir),
       "folder of CIFAR-10's binary batches (data_batch_1..5.bin, test_batch.bin)");
  flag("synthetic", po::bool_switch(&synthetic), "generated CIFAR-shaped data instead");
  flag("model", po::value(&o.model)->default_value(o.model), "vgg11, vgg13, vgg16, vgg19, ...");
  flag("workers", po::value(&o.workers)->default_value(0),
       "workers sharing the parameters (0: one per core)");
  flag("epochs", po::value(&o.epochs)->default_value(o.epochs), "epochs over the training set");
  flag("subset", po::value(&o.subset)->default_value(0),
       "use the first N training samples (0: all)");
  flag("out", po::value(&o.out)->default_value(o.out), "folder for the results");
  if (int code = pnn::runtime::parse_program_flags(
        "hogwild_cifar",
        "--data-dir DIR | --synthetic [--model vgg11] [--workers N] [--epochs N] [--subset N]\n"
        "                     [--out DIR]",
        "A VGG-style network trained HOGWILD by one worker per core, then tested.", flags, argc,
        argv);
      code >= 0)
    return code;
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
