// LeNet5 batch-32 training steps/s through pnn's training_job and through a bare
// LibTorch loop (same model, Adam, cross-entropy), with 1 and 2 intra-op threads,
// measured in many short alternating rounds in one process (this VM's speed drifts
// by 20-30% over seconds: medians of interleaved rounds, and CPU seconds per step,
// are what compare). The bare loop gets its batches the cheapest way: the whole
// training set resized and normalised to float once up front (245 MB), one
// index_select per batch. pnn gathers and transforms each batch from the shared
// uint8 set, so its overhead includes that. Also: Fashion-MNIST (gzip) load time and
// the share of a step spent gathering and transforming its batch. Prints JSON.
//
// usage: bench_train_step [--steps N] [--rounds R] [--dataset fashion-mnist]
#include <pnn/models/lenet5.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/random.hpp>
#include <pnn/system.hpp>
#include <pnn/training/transforms.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

using namespace pnn;
using namespace pnn::training;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// LeNet5 written out in plain LibTorch, as a user without pnn would.
struct BareLeNet5 : torch::nn::Module {
  torch::nn::Conv2d c1{torch::nn::Conv2dOptions(1, 6, 5)}, c2{torch::nn::Conv2dOptions(6, 16, 5)};
  torch::nn::BatchNorm2d b1{6}, b2{16};
  torch::nn::Linear f1{400, 120}, f2{120, 84}, f3{84, 10};
  BareLeNet5() {
    register_module("c1", c1);
    register_module("b1", b1);
    register_module("c2", c2);
    register_module("b2", b2);
    register_module("f1", f1);
    register_module("f2", f2);
    register_module("f3", f3);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(b1(c1(x))), 2);
    x = torch::max_pool2d(torch::relu(b2(c2(x))), 2);
    x = x.flatten(1);
    return f3(torch::relu(f2(torch::relu(f1(x)))));
  }
};

/// The bare loop: shuffled order over a pre-transformed float copy, step.
struct bare_loop {
  torch::Tensor images; // float N x 1 x 32 x 32, resized and normalised once
  torch::Tensor labels;
  std::vector<int64_t> order;
  std::shared_ptr<BareLeNet5> model = std::make_shared<BareLeNet5>();
  torch::optim::Adam opt{model->parameters(), torch::optim::AdamOptions(1e-3)};
  size_t pos = 0;

  explicit bare_loop(const dataset& d) : labels(d.labels), order(all_indices(d.size())) {
    namespace F = torch::nn::functional;
    images = F::interpolate(d.images.to(torch::kFloat32),
                            F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{32, 32})
                              .mode(torch::kBilinear)
                              .align_corners(false));
    images = (images / 255.0 - 0.2860) / 0.3530;
    rng gen{1};
    shuffle(order, gen);
  }

  void run(int64_t steps) {
    model->train();
    for (int64_t s = 0; s < steps; ++s) {
      if (pos + 32 > order.size())
        pos = 0;
      auto idx = torch::from_blob(order.data() + pos, {32}, torch::kInt64);
      pos += 32;
      auto x = images.index_select(0, idx);
      auto y = labels.index_select(0, idx);
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      opt.step();
      (void)loss.item<double>();
    }
  }
};

struct cpu_delta {
  cpu_times start = process_cpu_times();
  nlohmann::json done() const {
    auto now = process_cpu_times();
    return {{"user_seconds", now.user_seconds - start.user_seconds},
            {"system_seconds", now.system_seconds - start.system_seconds}};
  }
};

} // namespace

int main(int argc, char** argv) {
  configure_allocator();
  int64_t steps = 100;
  int rounds = 15;
  std::string name = "fashion-mnist";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--steps")
      steps = std::stoll(argv[i + 1]);
    else if (flag == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else if (flag == "--dataset")
      name = argv[i + 1];
  }
  nlohmann::json out;
  out["benchmark"] = "train_step";
  out["model"] = "lenet5";
  out["batch_size"] = 32;
  out["steps_per_round"] = steps;
  out["rounds"] = rounds;
  out["cores"] = available_cores();

  // Dataset load: median of 3.
  std::vector<double> loads;
  dataset_pair data;
  for (int i = 0; i < 3; ++i) {
    auto t = clock_type::now();
    data = load_dataset(name);
    loads.push_back(seconds_since(t));
  }
  out["dataset"] = name;
  out["dataset_load_seconds"] = median(loads);
  out["train_samples"] = data.train->size();

  auto transform = default_transform(name, true);
  for (int threads : {1, 2}) {
    use_intra_op_threads(threads);
    job_options o;
    o.model = "lenet5";
    o.optimizer = optimizer_options::parse("adam", 1e-3);
    o.schedule = schedule_options::parse("none");
    o.epochs = 1000; // never finishes within the benchmark
    o.batch_size = 32;
    o.threads = threads;
    o.train_transform = transform;
    training_job job{o, data.train, all_indices(data.train->size()), {}};
    bare_loop bare{*data.train};
    job.run(30); // warm-up
    bare.run(30);
    std::vector<double> pnn_rates, bare_rates;
    cpu_delta pnn_cpu_total, bare_cpu_total;
    nlohmann::json pnn_cpu = {{"user_seconds", 0.0}, {"system_seconds", 0.0}};
    nlohmann::json bare_cpu = pnn_cpu;
    auto add = [](nlohmann::json& acc, const nlohmann::json& d) {
      acc["user_seconds"] = acc["user_seconds"].get<double>() + d["user_seconds"].get<double>();
      acc["system_seconds"] =
        acc["system_seconds"].get<double>() + d["system_seconds"].get<double>();
    };
    auto time_bare = [&] {
      cpu_delta c;
      auto t = clock_type::now();
      bare.run(steps);
      bare_rates.push_back(static_cast<double>(steps) / seconds_since(t));
      add(bare_cpu, c.done());
    };
    auto time_pnn = [&] {
      cpu_delta c;
      auto t = clock_type::now();
      job.run(steps);
      pnn_rates.push_back(static_cast<double>(steps) / seconds_since(t));
      add(pnn_cpu, c.done());
    };
    for (int r = 0; r < rounds; ++r) {
      // ABBA order, so a drift in machine speed hits both loops alike.
      if (r % 2 == 0) {
        time_bare();
        time_pnn();
      } else {
        time_pnn();
        time_bare();
      }
    }
    double p = median(pnn_rates), b = median(bare_rates);
    auto cpu_seconds = [](const nlohmann::json& c) {
      return c["user_seconds"].get<double>() + c["system_seconds"].get<double>();
    };
    const double total_steps = static_cast<double>(steps) * rounds;
    auto key = "threads_" + std::to_string(threads);
    out[key] = {{"pnn_steps_per_second", p},
                {"bare_steps_per_second", b},
                {"pnn_rounds", pnn_rates},
                {"bare_rounds", bare_rates},
                {"pnn_overhead", 1.0 - p / b},
                {"pnn_cpu_seconds_per_step", cpu_seconds(pnn_cpu) / total_steps},
                {"bare_cpu_seconds_per_step", cpu_seconds(bare_cpu) / total_steps},
                {"pnn_overhead_cpu_time", cpu_seconds(pnn_cpu) / cpu_seconds(bare_cpu) - 1.0},
                {"pnn_cpu", pnn_cpu},
                {"bare_cpu", bare_cpu}};
  }

  // Batch gather + transform alone, 1 thread, as a share of a pnn step.
  use_intra_op_threads(1);
  {
    auto order = all_indices(data.train->size());
    rng gen{3};
    shuffle(order, gen);
    const int64_t n = 2000;
    auto t = clock_type::now();
    for (int64_t s = 0; s < n; ++s) {
      size_t begin = static_cast<size_t>((s * 32) % (data.train->size() - 32));
      auto x = make_batch(data.train->images, order, begin, begin + 32, transform, &gen);
      (void)x;
    }
    double per_batch = seconds_since(t) / static_cast<double>(n);
    double step = 1.0 / out["threads_1"]["pnn_steps_per_second"].get<double>();
    out["batch_prepare_seconds"] = per_batch;
    out["batch_prepare_fraction_of_step"] = per_batch / step;
  }
  out["targets"] = {{"pnn_overhead_max", 0.03}, {"batch_prepare_fraction_max", 0.05}};
  out["peak_rss_bytes"] = peak_rss_bytes();
  std::cout << out.dump(2) << std::endl;
  return 0;
}
