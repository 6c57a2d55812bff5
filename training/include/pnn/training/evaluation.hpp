#pragma once

#include <pnn/training/dataset.hpp>
#include <pnn/training/transforms.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <vector>

namespace pnn::models {
class Network;
}

namespace pnn::training {

/// A model's loss and accuracy on a set of samples.
struct evaluation {
  double loss = 0;     ///< mean cross-entropy
  double accuracy = 0; ///< fraction correct, 0..1
  int64_t samples = 0;
  /// confusion[true][predicted] counts; sums to `samples`.
  std::vector<std::vector<int64_t>> confusion;

  /// Correct / total per true class (NaN for a class with no samples).
  std::vector<double> per_class_accuracy() const;
};

/// Evaluates `model` (in eval mode, without gradients) on `indices` of `data`.
evaluation evaluate(models::Network& model, const dataset& data,
                    const std::vector<int64_t>& indices, const transform_options& transform,
                    int64_t batch_size = 1000);

/// Accumulates predictions into an evaluation (used by evaluate and by callers
/// that produce logits themselves).
void accumulate(evaluation& e, const torch::Tensor& logits, const torch::Tensor& labels,
                double loss_sum);

/// Recomputes the running mean and variance of every BatchNorm layer of `model` from
/// `indices` of `data` (forward passes in training mode without gradients, an exact
/// average over the batches, the eval transform), for a model whose parameters came
/// from elsewhere (a parameter holder keeps parameters, not these statistics).
/// Returns the number of BatchNorm layers (0: nothing to do, the model is unchanged).
int64_t recompute_batchnorm_statistics(models::Network& model, const dataset& data,
                                       const std::vector<int64_t>& indices,
                                       const transform_options& transform,
                                       int64_t batch_size = 256);

nlohmann::json to_json(const evaluation& e, const std::vector<std::string>& classes);

} // namespace pnn::training
