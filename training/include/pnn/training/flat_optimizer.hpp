#pragma once

// The optimizer of a parameter holder that runs it (Downpour SGD ran Adagrad on its
// parameter servers): one LibTorch optimizer over every parameter of a model as one
// flat float32 vector, in parameter_bytes' layout. Adam, AdamW and SGD act value by
// value, so stepping the flat vector is the same as stepping the model's tensors.

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

  /// `steps` optimizer steps at learning rate `lr`, each with the mean gradient
  /// `grad_sum / steps` (`count` values, the parameters' layout). Returns "" when
  /// applied; otherwise why not, and nothing changed: a count that does not fit, a
  /// gradient or learning rate that is not finite, a mean gradient beyond 1e15 in
  /// magnitude (its square would overflow the moments), or parameters the step
  /// would make non-finite.
  std::string step(const float* grad_sum, uint64_t count, int32_t steps, double lr);

  uint64_t count() const;
  /// The parameters, as parameter_bytes writes them.
  std::vector<char> parameter_bytes() const;
  /// The optimizer's state (moments, step counts) as LibTorch serialises it; empty
  /// before the first step.
  std::string state() const;
  /// Restores state() of an optimizer of the same kind over as many values. Throws
  /// pnn::error(invalid_argument) saying why it does not fit.
  void load_state(const std::string& bytes);
  /// The state's tensors (Adam/AdamW: exp_avg, exp_avg_sq[, max_exp_avg_sq]; SGD:
  /// momentum_buffer), empty before the first step: for checks and tests.
  std::vector<flat_tensor> state_tensors() const;
  /// Optimizer steps applied (Adam's step count; for SGD, counted here).
  int64_t steps() const;
  const optimizer_options& options() const;

private:
  struct impl;
  std::unique_ptr<impl> d_;
};

} // namespace pnn::training
