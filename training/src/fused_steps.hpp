#pragma once

// The optimizers' per-value arithmetic as single loops over raw floats (LibTorch 1.13
// runs each as 6-10 tensor operations per parameter tensor, ~200 us a LeNet5 step).
// A plain source without LibTorch, compiled with -fno-math-errno so the square
// roots vectorise. Private to pnn::training.

#include <cstdint>

namespace pnn::training::fused {

/// Adam and AdamW constants of one step, as LibTorch's Adam/AdamW compute them.
struct adam_step {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float weight_decay;      ///< Adam: added to the gradient as weight_decay * p (0: none)
  float decay;             ///< AdamW: p *= decay before the step (1: none)
  float sqrt_bias_correction2, eps;
  float minus_step_size;   ///< -lr / bias_correction1
};

/// The constants of step number `step` (1, 2, ...) of Adam (`decoupled`: AdamW).
adam_step make_adam_step(double beta1, double beta2, double eps, double lr, double weight_decay,
                         bool decoupled, int64_t step);

/// One Adam/AdamW step of n values: parameters p, gradients g, moments m and v;
/// `sq` (if not null) takes g^2's place in v (a mean square of several gradients).
void adam(float* p, const float* g, float* m, float* v, int64_t n, const adam_step& s,
          const float* sq = nullptr);

/// SGD constants of one step, as LibTorch's SGD computes them (dampening 0).
struct sgd_step {
  float weight_decay, momentum, minus_lr;
  bool nesterov;
  bool first; ///< the momentum buffer starts as this step's gradient
};

/// One SGD step of n values; `buf` the momentum buffer (unused without momentum).
void sgd(float* p, const float* g, float* buf, int64_t n, const sgd_step& s);

} // namespace pnn::training::fused
