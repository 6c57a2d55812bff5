// Trains LeNet5 for one epoch on a small synthetic set through the installed
// headers and libraries, and fails unless it learns something.
#include <pnn/models/network.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>

#include <cstdio>

int main() {
  using namespace pnn::training;
  synthetic_options s;
  s.train_size = 256;
  s.test_size = 128;
  auto data = make_synthetic(s);
  job_options o;
  o.model = "lenet5";
  o.epochs = 2;
  training_job job{o, data.train, all_indices(data.train->size()), {}};
  job.run_to_end();
  auto e = job.evaluate(*data.test, all_indices(data.test->size()));
  std::printf("consumer: %lld parameters, test accuracy %.3f\n",
              static_cast<long long>(pnn::models::parameter_count(*job.model())), e.accuracy);
  return e.accuracy > 0.5 ? 0 : 1;
}
