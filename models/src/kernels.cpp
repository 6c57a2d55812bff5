#include <pnn/models/kernels.hpp>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace pnn::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

/// Items per parallel_for chunk: below ~16k values a second thread costs more than
/// it saves.
int64_t grain(int64_t values_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, values_per_item));
}

bool covered(const torch::Tensor& x) {
  return x.defined() && x.dim() == 4 && x.scalar_type() == torch::kFloat32
    && x.device().is_cpu() && x.layout() == torch::kStrided && x.is_contiguous();
}

// ---- 2x2 max pooling -------------------------------------------------------------

/// One 2x2 window, LibTorch's rule: scanning the window in row order, a value
/// replaces the maximum when it is greater or NaN (so ties keep the first, and NaN
/// wins, the last NaN of the window). Returns the maximum; `k` its position 0..3.
inline float window_max(const float* r0, const float* r1, uint8_t& k) {
  const float v[4] = {r0[0], r0[1], r1[0], r1[1]};
  float m = v[0];
  k = 0;
  for (uint8_t q = 1; q < 4; ++q)
    if (v[q] > m || std::isnan(v[q])) {
      m = v[q];
      k = q;
    }
  return m;
}

#ifdef __SSE2__
/// Four windows at once, the same rule without branches: on random values the
/// scalar form mispredicts about every other comparison (~300 us a 32x6x28x28
/// input, 80 us once the predictor has learnt one input by heart).
inline void four_window_max(const float* r0, const float* r1, float* y, uint8_t* arg) {
  const __m128 a0 = _mm_loadu_ps(r0), a1 = _mm_loadu_ps(r0 + 4);
  const __m128 b0 = _mm_loadu_ps(r1), b1 = _mm_loadu_ps(r1 + 4);
  const __m128 v[4] = {_mm_shuffle_ps(a0, a1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm_shuffle_ps(a0, a1, _MM_SHUFFLE(3, 1, 3, 1)),
                       _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm_shuffle_ps(b0, b1, _MM_SHUFFLE(3, 1, 3, 1))};
  __m128 m = v[0];
  __m128i k = _mm_setzero_si128();
  for (int q = 1; q < 4; ++q) {
    const __m128 take = _mm_or_ps(_mm_cmpgt_ps(v[q], m), _mm_cmpunord_ps(v[q], v[q]));
    m = _mm_or_ps(_mm_and_ps(take, v[q]), _mm_andnot_ps(take, m));
    const __m128i t = _mm_castps_si128(take);
    k = _mm_or_si128(_mm_and_si128(t, _mm_set1_epi32(q)), _mm_andnot_si128(t, k));
  }
  _mm_storeu_ps(y, m);
  if (arg) {
    const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(k, k), k);
    const int32_t four = _mm_cvtsi128_si32(bytes);
    std::memcpy(arg, &four, 4);
  }
}
#endif

/// Planes [p0, p1): each 2x2 window's maximum and (if `arg`) its position.
void pool_planes(const float* x, float* y, uint8_t* arg, int64_t h, int64_t w, int64_t p0,
                 int64_t p1) {
  const int64_t ho = h / 2, wo = w / 2;
  for (int64_t p = p0; p < p1; ++p) {
    const float* xp = x + p * h * w;
    float* yp = y + p * ho * wo;
    uint8_t* ap = arg ? arg + p * ho * wo : nullptr;
    for (int64_t i = 0; i < ho; ++i) {
      const float* r0 = xp + 2 * i * w;
      const float* r1 = r0 + w;
      int64_t j = 0;
#ifdef __SSE2__
      for (; j + 4 <= wo; j += 4)
        four_window_max(r0 + 2 * j, r1 + 2 * j, yp + i * wo + j, ap ? ap + i * wo + j : nullptr);
#endif
      for (; j < wo; ++j) {
        uint8_t k;
        yp[i * wo + j] = window_max(r0 + 2 * j, r1 + 2 * j, k);
        if (ap)
          ap[i * wo + j] = k;
      }
    }
  }
}

/// The gradient of planes [p0, p1): each window's gradient goes to its maximum's
/// position; `gx` is zero where nothing arrives (set by the caller).
void unpool_planes(const float* gy, const uint8_t* arg, float* gx, int64_t h, int64_t w,
                   int64_t p0, int64_t p1) {
  const int64_t ho = h / 2, wo = w / 2;
  const int64_t offset[4] = {0, 1, w, w + 1};
  for (int64_t p = p0; p < p1; ++p) {
    const float* gp = gy + p * ho * wo;
    const uint8_t* ap = arg + p * ho * wo;
    float* xp = gx + p * h * w;
    for (int64_t i = 0; i < ho; ++i)
      for (int64_t j = 0; j < wo; ++j)
        xp[2 * i * w + 2 * j + offset[ap[i * wo + j]]] = 0.0f + gp[i * wo + j]; // (-0 -> +0,
                                                                                 // as LibTorch adds)
  }
}

/// The pooled tensor of x and, if `arg`, each maximum's position into *arg.
torch::Tensor pool(const torch::Tensor& x, torch::Tensor* arg) {
  const auto n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  auto y = torch::empty({n, c, h / 2, w / 2}, x.options());
  if (arg)
    *arg = torch::empty({n, c, h / 2, w / 2}, x.options().dtype(torch::kUInt8));
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  uint8_t* ap = arg ? arg->data_ptr<uint8_t>() : nullptr;
  at::parallel_for(0, n * c, grain(h * w),
                   [&](int64_t p0, int64_t p1) { pool_planes(xp, yp, ap, h, w, p0, p1); });
  return y;
}

struct max_pool2x2_fn : torch::autograd::Function<max_pool2x2_fn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x) {
    const auto h = x.size(2), w = x.size(3);
    torch::Tensor arg;
    auto y = pool(x, &arg);
    ctx->saved_data["arg"] = arg;
    ctx->saved_data["h"] = h;
    ctx->saved_data["w"] = w;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto arg = ctx->saved_data["arg"].toTensor();
    const auto h = ctx->saved_data["h"].toInt(), w = ctx->saved_data["w"].toInt();
    auto gy = grads[0].contiguous();
    const auto n = arg.size(0), c = arg.size(1);
    auto gx = torch::zeros({n, c, h, w}, gy.options());
    const float* gp = gy.data_ptr<float>();
    const uint8_t* ap = arg.data_ptr<uint8_t>();
    float* xp = gx.data_ptr<float>();
    at::parallel_for(0, n * c, grain(h * w),
                     [&](int64_t p0, int64_t p1) { unpool_planes(gp, ap, xp, h, w, p0, p1); });
    return {gx};
  }
};

// ---- batch norm, training mode ---------------------------------------------------

/// Sum of v[0, n) and of (v[i] - shift)^2, with eight float accumulators (a plane
/// is at most a few thousand values; planes are summed in double by the caller).
void plane_sums(const float* v, int64_t n, float shift, double& sum, double& squares) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float d = v[i + k] - shift;
      s[k] += d;
      q[k] += d * d;
    }
  float st = 0, qt = 0;
  for (; i < n; ++i) {
    const float d = v[i] - shift;
    st += d;
    qt += d * d;
  }
  for (int k = 0; k < 8; ++k) {
    st += s[k];
    qt += q[k];
  }
  sum += st;
  squares += qt;
}

/// The running statistics a training step updates (passed by pointer: autograd
/// functions take no undefined tensors).
struct running_statistics {
  torch::Tensor mean, var; ///< undefined: not tracked
  double momentum;         ///< < 0: not updated
};

struct batch_norm_fn : torch::autograd::Function<batch_norm_fn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const running_statistics* running, double eps) {
    const auto n = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
    const auto count = n * hw;
    auto y = torch::empty_like(x);
    auto mean = torch::empty({c}, x.options());
    auto invstd = torch::empty({c}, x.options());
    auto w = weight.contiguous(), b = bias.contiguous();
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    float* mp = mean.data_ptr<float>();
    float* ip = invstd.data_ptr<float>();
    const float* wp = w.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    std::vector<double> unbiased(static_cast<size_t>(c));
    at::parallel_for(0, c, grain(count), [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        // Shifted by the first plane's mean: the variance of values far from zero
        // keeps its digits (sum of squares minus square of sums, on values near
        // their mean).
        double first = 0;
        for (int64_t k = 0; k < hw; ++k)
          first += xp[ch * hw + k];
        const auto shift = static_cast<float>(first / static_cast<double>(hw));
        double s = 0, q = 0;
        for (int64_t i = 0; i < n; ++i)
          plane_sums(xp + (i * c + ch) * hw, hw, shift, s, q);
        const double m = s / static_cast<double>(count);
        const double var = std::max(0.0, q / static_cast<double>(count) - m * m);
        const double mu = shift + m;
        const double inv = 1.0 / std::sqrt(var + eps);
        mp[ch] = static_cast<float>(mu);
        ip[ch] = static_cast<float>(inv);
        unbiased[static_cast<size_t>(ch)] =
          var * static_cast<double>(count) / static_cast<double>(count - 1);
        const float scale = static_cast<float>(wp[ch] * inv);
        const float offset = static_cast<float>(bp[ch] - mu * wp[ch] * inv);
        for (int64_t i = 0; i < n; ++i) {
          const float* src = xp + (i * c + ch) * hw;
          float* dst = yp + (i * c + ch) * hw;
          for (int64_t k = 0; k < hw; ++k)
            dst[k] = src[k] * scale + offset;
        }
      }
    });
    const double momentum = running->momentum;
    if (momentum >= 0 && running->mean.defined() && running->var.defined()) {
      auto rm = running->mean.accessor<float, 1>();
      auto rv = running->var.accessor<float, 1>();
      for (int64_t ch = 0; ch < c; ++ch) {
        rm[ch] = static_cast<float>(momentum * mp[ch] + (1 - momentum) * rm[ch]);
        rv[ch] = static_cast<float>(momentum * unbiased[static_cast<size_t>(ch)]
                                    + (1 - momentum) * rv[ch]);
      }
      running->mean.unsafeGetTensorImpl()->bump_version(); // (as LibTorch's update does)
      running->var.unsafeGetTensorImpl()->bump_version();
    }
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = torch::native_batch_norm_backward(
      grads[0], saved[0], saved[1], {}, {}, saved[2], saved[3], /*train=*/true,
      ctx->saved_data["eps"].toDouble(),
      {ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2)});
    return {std::get<0>(g), std::get<1>(g), std::get<2>(g), {}, {}};
  }
};

bool covered_channel_vector(const torch::Tensor& v, int64_t c) {
  return v.defined() && v.dim() == 1 && v.size(0) == c && v.scalar_type() == torch::kFloat32
    && v.device().is_cpu() && v.is_contiguous();
}

} // namespace

torch::Tensor max_pool2x2(const torch::Tensor& x) {
  if (!covered(x) || x.size(2) < 2 || x.size(3) < 2)
    return torch::max_pool2d(x, {2, 2}, {2, 2});
  if (!torch::GradMode::is_enabled() || !x.requires_grad())
    return pool(x, nullptr); // (no positions to keep, no graph)
  return max_pool2x2_fn::apply(x);
}

torch::Tensor batch_norm_train(const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps) {
  if (x.dim() >= 2) { // F::batch_norm's check and message
    int64_t per_channel = x.size(0);
    for (int64_t d = 2; d < x.dim(); ++d)
      per_channel *= x.size(d);
    TORCH_CHECK(per_channel != 1,
                "Expected more than 1 value per channel when training, got input size ",
                x.sizes());
  }
  const bool ok = covered(x) && x.size(0) * x.size(2) * x.size(3) > 1
    && covered_channel_vector(weight, x.size(1)) && covered_channel_vector(bias, x.size(1))
    && (!running_mean.defined() || covered_channel_vector(running_mean, x.size(1)))
    && (!running_var.defined() || covered_channel_vector(running_var, x.size(1)));
  if (!ok)
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/true,
                             std::max(0.0, momentum), eps, /*cudnn_enabled=*/false);
  const running_statistics running{std::move(running_mean), std::move(running_var), momentum};
  return batch_norm_fn::apply(x, weight, bias, &running, eps);
}

FastBatchNorm2dImpl::FastBatchNorm2dImpl(const torch::nn::BatchNorm2dOptions& options)
  : options(options) {
  reset();
}

// As LibTorch's NormImplBase: the same names, in the same order.
void FastBatchNorm2dImpl::reset() {
  const auto n = options.num_features();
  if (options.affine()) {
    weight = register_parameter("weight", torch::empty({n}));
    bias = register_parameter("bias", torch::empty({n}));
  } else {
    weight = register_parameter("weight", torch::Tensor(), /*requires_grad=*/false);
    bias = register_parameter("bias", torch::Tensor(), /*requires_grad=*/false);
  }
  if (options.track_running_stats()) {
    running_mean = register_buffer("running_mean", torch::zeros({n}));
    running_var = register_buffer("running_var", torch::ones({n}));
    num_batches_tracked =
      register_buffer("num_batches_tracked", torch::tensor(0, torch::dtype(torch::kLong)));
  } else {
    running_mean = register_buffer("running_mean", torch::Tensor());
    running_var = register_buffer("running_var", torch::Tensor());
    num_batches_tracked = register_buffer("num_batches_tracked", torch::Tensor());
  }
  reset_parameters();
}

void FastBatchNorm2dImpl::reset_running_stats() {
  if (options.track_running_stats()) {
    running_mean.zero_();
    running_var.fill_(1);
    num_batches_tracked.zero_();
  }
}

void FastBatchNorm2dImpl::reset_parameters() {
  reset_running_stats();
  if (options.affine()) {
    torch::nn::init::ones_(weight);
    torch::nn::init::zeros_(bias);
  }
}

void FastBatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "pnn::models::FastBatchNorm2d(" << options.num_features() << ", eps=" << options.eps()
         << ", momentum=";
  if (options.momentum())
    stream << *options.momentum();
  else
    stream << "None";
  stream << ", affine=" << options.affine()
         << ", track_running_stats=" << options.track_running_stats() << ")";
}

torch::Tensor FastBatchNorm2dImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "expected 4D input (got ", x.dim(), "D input)");
  // BatchNormImplBase::forward's bookkeeping, then the kernel.
  double factor = options.momentum() ? *options.momentum() : 0.0;
  if (is_training() && options.track_running_stats() && num_batches_tracked.defined()) {
    num_batches_tracked += 1;
    if (!options.momentum())
      factor = 1.0 / num_batches_tracked.item<double>();
  }
  const bool batch_statistics = is_training() || !options.track_running_stats();
  if (!batch_statistics || !options.affine())
    return torch::nn::functional::detail::batch_norm(x, running_mean, running_var, weight, bias,
                                                     batch_statistics, factor, options.eps());
  return batch_norm_train(x, weight, bias, running_mean, running_var, factor, options.eps());
}

std::pair<torch::Tensor, torch::Tensor> fold_batch_norm(const torch::Tensor& weight,
                                                        const torch::Tensor& bias,
                                                        const FastBatchNorm2dImpl& bn) {
  TORCH_CHECK(bn.foldable(), "fold_batch_norm: the batch norm is training or not affine");
  const auto scale = bn.weight * torch::rsqrt(bn.running_var + bn.options.eps());
  auto b = bias.defined() ? bias : torch::zeros_like(bn.running_mean);
  return {weight * scale.view({-1, 1, 1, 1}), (b - bn.running_mean) * scale + bn.bias};
}

} // namespace pnn::models
