#include <pnn/training/evaluation.hpp>

#include <pnn/models/kernels.hpp>
#include <pnn/models/network.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <functional>

namespace pnn::training {

std::vector<double> evaluation::per_class_accuracy() const {
  std::vector<double> result;
  for (size_t c = 0; c < confusion.size(); ++c) {
    int64_t total = 0;
    for (auto v : confusion[c])
      total += v;
    result.push_back(
      total == 0 ? NAN : static_cast<double>(confusion[c][c]) / static_cast<double>(total));
  }
  return result;
}

void accumulate(evaluation& e, const torch::Tensor& logits, const torch::Tensor& labels,
                double loss_sum) {
  const auto k = logits.size(1);
  if (e.confusion.empty())
    e.confusion.assign(static_cast<size_t>(k), std::vector<int64_t>(static_cast<size_t>(k), 0));
  auto pred = logits.argmax(1).contiguous();
  auto lab = labels.contiguous();
  const auto* p = pred.data_ptr<int64_t>();
  const auto* l = lab.data_ptr<int64_t>();
  const auto n = lab.size(0);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    ++e.confusion[static_cast<size_t>(l[i])][static_cast<size_t>(p[i])];
    correct += p[i] == l[i];
  }
  const auto before = static_cast<double>(e.samples);
  e.samples += n;
  const auto after = static_cast<double>(e.samples);
  e.accuracy = (e.accuracy * before + static_cast<double>(correct)) / after;
  e.loss = (e.loss * before + loss_sum) / after;
}

evaluation evaluate(models::Network& model, const dataset& data,
                    const std::vector<int64_t>& indices, const transform_options& transform,
                    int64_t batch_size) {
  // Inference mode, not just no gradients: no version counters or view tracking
  // either (a LeNet5 validation ~25% faster). Nothing made here outlives the call.
  c10::InferenceMode inference;
  const bool was_training = model.is_training();
  model.eval();
  evaluation e;
  e.confusion.assign(static_cast<size_t>(data.num_classes()),
                     std::vector<int64_t>(static_cast<size_t>(data.num_classes()), 0));
  for (size_t begin = 0; begin < indices.size(); begin += static_cast<size_t>(batch_size)) {
    size_t end = std::min(indices.size(), begin + static_cast<size_t>(batch_size));
    auto x = make_batch(data.images, indices, begin, end, transform, nullptr);
    auto idx = torch::from_blob(const_cast<int64_t*>(indices.data() + begin),
                                {static_cast<int64_t>(end - begin)}, torch::kInt64);
    auto y = data.labels.index_select(0, idx);
    auto logits = model.forward(x);
    auto loss = torch::nn::functional::cross_entropy(
      logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
    accumulate(e, logits, y, loss.item<double>());
  }
  model.train(was_training);
  return e;
}

namespace {

/// Resets a BatchNorm layer's statistics and makes it average all batches from now
/// on; returns its momentum to restore.
template <class Impl>
bool reset_for_average(torch::nn::Module& m, std::vector<std::function<void()>>& restore) {
  auto* bn = m.as<Impl>();
  if (!bn || !bn->options.track_running_stats())
    return false;
  bn->reset_running_stats();
  auto momentum = bn->options.momentum();
  bn->options.momentum(c10::nullopt); // cumulative average over num_batches_tracked
  restore.push_back([bn, momentum] { bn->options.momentum(momentum); });
  return true;
}

} // namespace

int64_t recompute_batchnorm_statistics(models::Network& model, const dataset& data,
                                       const std::vector<int64_t>& indices,
                                       const transform_options& transform, int64_t batch_size) {
  std::vector<std::function<void()>> restore;
  int64_t layers = 0;
  for (const auto& m : model.modules(/*include_self=*/false))
    layers += reset_for_average<torch::nn::BatchNorm1dImpl>(*m, restore)
      || reset_for_average<torch::nn::BatchNorm2dImpl>(*m, restore)
      || reset_for_average<torch::nn::BatchNorm3dImpl>(*m, restore)
      || reset_for_average<models::FastBatchNorm2dImpl>(*m, restore);
  if (layers == 0)
    return 0;
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.train();
  for (size_t begin = 0; begin < indices.size(); begin += static_cast<size_t>(batch_size)) {
    size_t end = std::min(indices.size(), begin + static_cast<size_t>(batch_size));
    if (end - begin < 2 && begin > 0)
      break; // one sample has no variance
    model.forward(make_batch(data.images, indices, begin, end, transform, nullptr));
  }
  for (auto& r : restore)
    r();
  model.train(was_training);
  return layers;
}

nlohmann::json to_json(const evaluation& e, const std::vector<std::string>& classes) {
  nlohmann::json per_class = nlohmann::json::object();
  auto acc = e.per_class_accuracy();
  for (size_t c = 0; c < acc.size(); ++c) {
    auto name = c < classes.size() ? classes[c] : std::to_string(c);
    per_class[name] = std::isnan(acc[c]) ? nlohmann::json(nullptr) : nlohmann::json(acc[c]);
  }
  return {{"loss", e.loss},
          {"accuracy", e.accuracy},
          {"samples", e.samples},
          {"per_class_accuracy", per_class},
          {"confusion", e.confusion}};
}

} // namespace pnn::training
