#pragma once

// The optimizer of a parameter holder that runs it (Downpour SGD ran Adagrad on its
// parameter servers): Adam, AdamW or SGD (LibTorch 1.13's arithmetic) over every
// parameter of a model as one flat float32 vector, in parameter_bytes' layout. They
// act value by value, so stepping the flat vector is stepping the model's tensors.

#include <pnn/training/optimizers.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pnn::training {

/// A named copy of one state tensor's values.
struct flat_tensor {
  std::string name;
  std::vector<float> values;
};

class flat_optimizer {
public:
  /// Holds `params` (count * 4 bytes of float32) and `options`' optimizer over them.
  /// Throws pnn::error when the byte count is not a multiple of 4.
  flat_optimizer(const optimizer_options& options, const std::vector<char>& params);
  ~flat_optimizer();
  flat_optimizer(const flat_optimizer&) = delete;
  flat_optimizer& operator=(const flat_optimizer&) = delete;

  /// `steps` optimizer steps at learning rate `lr` with the gradients of that many
  /// training steps known by their sum `grad_sum` (`count` values in the
  /// parameters' layout) and, for Adam/AdamW, the sum of their squares
  /// `square_sum` (null: the mean's square, exact for one step): each step's first
  /// moment takes the mean gradient, its second moment the mean square. So k steps
  /// move a value with noisy gradients as little as k real steps would, not as far
  /// as k steps of a noise-free mean. Returns "" when applied; otherwise why not,
  /// and nothing changed: a count that does not fit, a gradient or learning rate
  /// that is not finite, a mean gradient beyond 1e15 in magnitude (its square would
  /// overflow the moments), or parameters the steps would make non-finite.
  std::string step(const float* grad_sum, uint64_t count, int32_t steps, double lr,
                   const float* square_sum = nullptr);

  uint64_t count() const;
  /// The parameters, as parameter_bytes writes them.
  std::vector<char> parameter_bytes() const;
  /// The optimizer's state (its name, step count and moments, in a LibTorch
  /// archive); empty before the first step.
  std::string state() const;
  /// Restores state() of an optimizer of the same kind over as many values. Throws
  /// pnn::error(invalid_argument) saying why it does not fit.
  void load_state(const std::string& bytes);
  /// The state's tensors (Adam/AdamW: exp_avg, exp_avg_sq[, max_exp_avg_sq]; SGD:
  /// momentum_buffer), empty before the first step: for checks and tests.
  std::vector<flat_tensor> state_tensors() const;
  /// Optimizer steps applied.
  int64_t steps() const;
  const optimizer_options& options() const;

private:
  struct impl;
  std::unique_ptr<impl> d_;
};

} // namespace pnn::training
