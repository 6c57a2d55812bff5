// Batch-32 training steps/s of one model (LeNet5 by default; AlexNet, VGG11) through
// pnn's training_job and through a bare LibTorch loop (the same architecture in
// LibTorch's own modules, Adam, cross-entropy), with 1 and 2 intra-op threads,
// measured in many short alternating rounds in one process (this VM's speed drifts
// by 20-30% over seconds: medians of interleaved rounds, and CPU seconds per step,
// are what compare). The bare loop gets its batches the cheapest way: the whole
// training set resized and normalised to float once up front (245 MB), one
// index_select per batch. pnn gathers and transforms each batch from the shared
// uint8 set, so its overhead includes that. Also: Fashion-MNIST (gzip) load time and
// the share of a step spent gathering and transforming its batch. Prints JSON.
//
// Also whether two jobs of one thread or one job of two threads train faster
// (jobs_per_core_gain: 2 x one-thread steps/s over two-thread steps/s).
//
// usage: bench_train_step [--model lenet5|alexnet|vgg11] [--steps N] [--rounds R]
//                         [--dataset fashion-mnist|synthetic-cifar|...]
// (defaults per model: lenet5 100 steps x 15 rounds, alexnet 30 x 9, vgg11 8 x 7)
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
#include <functional>
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

/// AlexNet as pnn's registry builds it (CIFAR-sized input), in LibTorch's modules.
struct BareAlexNet : torch::nn::Module {
  torch::nn::Sequential features;
  torch::nn::Linear classifier{256, 10};
  explicit BareAlexNet(int64_t in) {
    namespace nn = torch::nn;
    features = nn::Sequential(
      nn::Conv2d(nn::Conv2dOptions(in, 64, 11).stride(4).padding(5)),
      nn::ReLU(nn::ReLUOptions(true)), nn::MaxPool2d(2),
      nn::Conv2d(nn::Conv2dOptions(64, 192, 5).padding(2)), nn::ReLU(nn::ReLUOptions(true)),
      nn::MaxPool2d(2), nn::Conv2d(nn::Conv2dOptions(192, 384, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), nn::Conv2d(nn::Conv2dOptions(384, 256, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1)),
      nn::ReLU(nn::ReLUOptions(true)), nn::MaxPool2d(2));
    register_module("features", features);
    register_module("classifier", classifier);
  }
  torch::Tensor forward(torch::Tensor x) {
    return classifier(features->forward(x).flatten(1));
  }
};

/// VGG11 with batch norm as pnn's registry builds it, in LibTorch's modules.
struct BareVGG11 : torch::nn::Module {
  torch::nn::Sequential features;
  torch::nn::Linear classifier{512, 10};
  explicit BareVGG11(int64_t in) {
    namespace nn = torch::nn;
    for (int64_t c : {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}) {
      if (c == 0) {
        features->push_back(nn::MaxPool2d(2));
        continue;
      }
      features->push_back(nn::Conv2d(nn::Conv2dOptions(in, c, 3).padding(1)));
      features->push_back(nn::BatchNorm2d(c));
      features->push_back(nn::ReLU(nn::ReLUOptions(true)));
      in = c;
    }
    register_module("features", features);
    register_module("classifier", classifier);
  }
  torch::Tensor forward(torch::Tensor x) {
    return classifier(features->forward(x).flatten(1));
  }
};

/// The bare loop: shuffled order over a pre-transformed float copy, step.
struct bare_loop {
  torch::Tensor images; // float N x C x 32 x 32, resized and normalised once
  torch::Tensor labels;
  std::vector<int64_t> order;
  std::function<torch::Tensor(torch::Tensor)> forward;
  std::shared_ptr<torch::nn::Module> model;
  std::unique_ptr<torch::optim::Adam> opt;
  size_t pos = 0;

  bare_loop(const std::string& name, const dataset& d, const transform_options& t)
    : labels(d.labels), order(all_indices(d.size())) {
    namespace F = torch::nn::functional;
    images = d.images.to(torch::kFloat32);
    if (images.size(2) != 32 || images.size(3) != 32)
      images = F::interpolate(images, F::InterpolateFuncOptions()
                                        .size(std::vector<int64_t>{32, 32})
                                        .mode(torch::kBilinear)
                                        .align_corners(false));
    images = images / 255.0;
    const auto c = static_cast<int64_t>(t.mean.size());
    images = (images - torch::tensor(t.mean, torch::kFloat32).view({1, c, 1, 1}))
      / torch::tensor(t.std, torch::kFloat32).view({1, c, 1, 1});
    if (name == "alexnet") {
      auto m = std::make_shared<BareAlexNet>(d.channels());
      forward = [m](torch::Tensor x) { return m->forward(x); };
      model = m;
    } else if (name == "vgg11") {
      auto m = std::make_shared<BareVGG11>(d.channels());
      forward = [m](torch::Tensor x) { return m->forward(x); };
      model = m;
    } else {
      auto m = std::make_shared<BareLeNet5>();
      forward = [m](torch::Tensor x) { return m->forward(x); };
      model = m;
    }
    opt = std::make_unique<torch::optim::Adam>(model->parameters(),
                                               torch::optim::AdamOptions(1e-3));
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
      opt->zero_grad();
      auto loss = torch::nn::functional::cross_entropy(forward(x), y);
      loss.backward();
      opt->step();
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
  int64_t steps = 0;
  int rounds = 0;
  std::string name, model = "lenet5";
  for (int i = 1; i < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h" || i + 1 >= argc) {
      std::cout << "usage: bench_train_step [--model lenet5|alexnet|vgg11] [--steps N] "
                   "[--rounds R] [--dataset NAME]\n";
      return flag == "--help" || flag == "-h" ? 0 : 2;
    }
    if (flag == "--steps")
      steps = std::stoll(argv[i + 1]);
    else if (flag == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else if (flag == "--dataset")
      name = argv[i + 1];
    else if (flag == "--model")
      model = argv[i + 1];
    else {
      std::cerr << "bench_train_step: unknown flag " << flag << "\n";
      return 2;
    }
  }
  if (model != "lenet5" && model != "alexnet" && model != "vgg11") {
    std::cerr << "bench_train_step: --model " << model << ": expected lenet5, alexnet or vgg11\n";
    return 2;
  }
  const bool big = model != "lenet5";
  if (name.empty())
    name = big ? "synthetic-cifar" : "fashion-mnist";
  if (steps <= 0)
    steps = model == "lenet5" ? 100 : model == "alexnet" ? 30 : 8;
  if (rounds <= 0)
    rounds = model == "lenet5" ? 15 : model == "alexnet" ? 9 : 7;
  nlohmann::json out;
  out["benchmark"] = "train_step";
  out["model"] = model;
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

  auto transform = default_transform(name, false); // (the bare loop augments nothing)
  for (int threads : {1, 2}) {
    use_intra_op_threads(threads);
    job_options o;
    o.model = model;
    o.optimizer = optimizer_options::parse("adam", 1e-3);
    o.schedule = schedule_options::parse("none");
    o.epochs = 1000; // never finishes within the benchmark
    o.batch_size = 32;
    o.threads = threads;
    o.train_transform = transform;
    training_job job{o, data.train, all_indices(data.train->size()), {}};
    bare_loop bare{model, *data.train, transform};
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
                {"speedup_over_bare", p / b},
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
  // Two one-thread jobs against one two-thread job, in training steps per second.
  auto gain = [&](const char* who) {
    return 2 * out["threads_1"][who].get<double>() / out["threads_2"][who].get<double>();
  };
  out["jobs_per_core_gain"] = {{"pnn", gain("pnn_steps_per_second")},
                               {"bare", gain("bare_steps_per_second")}};
  out["targets"] = {{"speedup_over_bare_min", model == "lenet5" ? 1.3 : 1.15},
                    {"batch_prepare_fraction_max", 0.05}};
  out["peak_rss_bytes"] = peak_rss_bytes();
  std::cout << out.dump(2) << std::endl;
  return 0;
}
