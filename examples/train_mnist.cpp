// One training job through pnn's C++ API: LeNet5 on Fashion-MNIST (or real MNIST
// from --data-dir), Adam 1e-3, cosine schedule stepped per batch, then the test set.
//
//   ./build/examples/train_mnist [--epochs N] [--data-dir DIR] [--subset N]
#include <pnn/error.hpp>
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
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--epochs")
      epochs = std::stoll(argv[i + 1]);
    else if (flag == "--data-dir")
      data_dir = argv[i + 1];
    else if (flag == "--subset")
      subset = std::stoll(argv[i + 1]);
    else {
      std::fprintf(stderr,
                   "train_mnist: unknown flag %s (expected --epochs, --data-dir, --subset)\n",
                   argv[i]);
      return 2;
    }
  }
  try {
    const std::string name = data_dir.empty() ? "fashion-mnist" : "mnist";
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
