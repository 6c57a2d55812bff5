// One training job through pnn's C++ API: LeNet5 on Fashion-MNIST (or real MNIST
// from --data-dir), Adam 1e-3, cosine schedule stepped per batch, then the test set.
//
//   ./build/examples/train_mnist [--epochs N] [--data-dir DIR | --synthetic] [--subset N]
#include <pnn/error.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/system.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  using namespace pnn::training;
  pnn::configure_allocator();
  int64_t epochs = 1, subset = 0;
  std::string data_dir;
  bool synthetic = false;
  namespace po = boost::program_options;
  po::options_description flags{"flags"};
  auto flag = flags.add_options();
  flag("epochs", po::value(&epochs)->default_value(epochs), "epochs to train");
  flag("data-dir", po::value(&data_dir),
       "folder of real MNIST's idx files (default: Fashion-MNIST)");
  flag("synthetic", po::bool_switch(&synthetic), "generated MNIST-shaped data instead");
  flag("subset", po::value(&subset)->default_value(subset),
       "use the first N training samples (0: all)");
  if (int code = pnn::runtime::parse_program_flags(
        "train_mnist", "[--epochs N] [--data-dir DIR | --synthetic] [--subset N]",
        "One training job: LeNet5, Adam 1e-3, cosine schedule, then the test set.", flags, argc,
        argv);
      code >= 0)
    return code;
  if (synthetic && !data_dir.empty()) {
    std::fprintf(stderr, "train_mnist: --synthetic: generated data reads no --data-dir\n");
    return 2;
  }
  try {
    const std::string name = synthetic ? "synthetic" : data_dir.empty() ? "fashion-mnist" : "mnist";
    auto data = load_dataset(name, data_dir, subset);
    job_options o;
    o.model = "lenet5";
    o.optimizer = optimizer_options::parse("adam", 1e-3);
    o.schedule = schedule_options::parse("cosine");
    o.epochs = epochs;
    o.batch_size = 32;
    o.train_transform = default_transform(name, true);
    o.eval_transform = default_transform(name, false);
    training_job job{o, data.train, all_indices(data.train->size()), {}};
    job.on_epoch = [](const epoch_record& e) {
      std::printf("epoch %lld: loss %.4f, accuracy %.4f (%.1f s)\n",
                  static_cast<long long>(e.epoch), e.train_loss, e.train_accuracy, e.seconds);
    };
    job.run_to_end();
    auto test = job.evaluate(*data.test, all_indices(data.test->size()));
    std::printf("test accuracy %.4f on %lld images\n", test.accuracy,
                static_cast<long long>(test.samples));
  } catch (const pnn::error& e) {
    std::fprintf(stderr, "train_mnist: %s\n", e.what());
    return pnn::is_input_error(e.code()) ? 2 : 1;
  }
  return 0;
}
