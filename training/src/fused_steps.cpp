#include "fused_steps.hpp"

#include <cmath>

namespace pnn::training::fused {

// Operation for operation in LibTorch 1.13's order (adam.cpp, adamw.cpp, sgd.cpp);
// its vectorised kernels fuse some multiply-adds, so results agree to float
// rounding, not bit for bit.

namespace {

template <bool WeightDecay, bool Decay, bool Square>
void adam_values(float* p, const float* g, float* m, float* v, int64_t n, const adam_step& s,
                 const float* sq) {
  for (int64_t i = 0; i < n; ++i) {
    const float pi = Decay ? p[i] * s.decay : p[i];
    const float gi = WeightDecay ? g[i] + pi * s.weight_decay : g[i];
    const float mi = m[i] * s.beta1 + gi * s.one_minus_beta1;
    const float vi = Square ? v[i] * s.beta2 + sq[i] * s.one_minus_beta2
                            : v[i] * s.beta2 + s.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / s.sqrt_bias_correction2 + s.eps;
    p[i] = pi + s.minus_step_size * mi / denom;
  }
}

template <bool Square>
void adam_dispatch(float* p, const float* g, float* m, float* v, int64_t n, const adam_step& s,
                   const float* sq) {
  const bool wd = s.weight_decay != 0, decay = s.decay != 1;
  if (wd && decay)
    adam_values<true, true, Square>(p, g, m, v, n, s, sq);
  else if (wd)
    adam_values<true, false, Square>(p, g, m, v, n, s, sq);
  else if (decay)
    adam_values<false, true, Square>(p, g, m, v, n, s, sq);
  else
    adam_values<false, false, Square>(p, g, m, v, n, s, sq);
}

} // namespace

adam_step make_adam_step(double beta1, double beta2, double eps, double lr, double weight_decay,
                         bool decoupled, int64_t step) {
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step));
  adam_step s{};
  s.beta1 = static_cast<float>(beta1);
  s.one_minus_beta1 = static_cast<float>(1 - beta1);
  s.beta2 = static_cast<float>(beta2);
  s.one_minus_beta2 = static_cast<float>(1 - beta2);
  s.weight_decay = decoupled ? 0.0f : static_cast<float>(weight_decay);
  s.decay = decoupled && weight_decay != 0 ? static_cast<float>(1 - lr * weight_decay) : 1.0f;
  s.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bc2));
  s.eps = static_cast<float>(eps);
  s.minus_step_size = static_cast<float>(-(lr / bc1));
  return s;
}

void adam(float* p, const float* g, float* m, float* v, int64_t n, const adam_step& s,
          const float* sq) {
  if (sq)
    adam_dispatch<true>(p, g, m, v, n, s, sq);
  else
    adam_dispatch<false>(p, g, m, v, n, s, sq);
}

void sgd(float* p, const float* g, float* buf, int64_t n, const sgd_step& s) {
  if (s.momentum == 0) {
    if (s.weight_decay == 0)
      for (int64_t i = 0; i < n; ++i)
        p[i] = p[i] + s.minus_lr * g[i];
    else
      for (int64_t i = 0; i < n; ++i)
        p[i] = p[i] + s.minus_lr * (g[i] + p[i] * s.weight_decay);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float gi = s.weight_decay == 0 ? g[i] : g[i] + p[i] * s.weight_decay;
    const float b = s.first ? gi : buf[i] * s.momentum + gi;
    buf[i] = b;
    const float d = s.nesterov ? gi + s.momentum * b : b;
    p[i] = p[i] + s.minus_lr * d;
  }
}

} // namespace pnn::training::fused
