#include <pnn/training/flat_optimizer.hpp>

#include <pnn/error.hpp>

#include "fused_steps.hpp"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <sstream>

namespace pnn::training {

// The steps are written out here (not LibTorch's optimizers) for two reasons: k steps
// of an Adam with k gradients known only by their mean and mean square need the
// square, which LibTorch's step cannot take; and the state has one form to save.
// With k = 1 the arithmetic is that of a training job's optimizer (make_optimizer's
// loops, which agree with LibTorch 1.13's to float rounding): actors.sgd compares a
// holder's Adam against a training job to 1e-6, actors.parameter_holder the others. One difference: LibTorch skips a parameter without a gradient, here
// every value steps (a zero gradient still decays and carries momentum).
struct flat_optimizer::impl {
  optimizer_options o;
  torch::Tensor params;                     ///< 1-D float32
  torch::Tensor exp_avg, exp_avg_sq, max_sq; ///< Adam/AdamW (max_sq: amsgrad)
  torch::Tensor momentum_buffer;            ///< SGD with momentum
  int64_t steps = 0;

  bool adam() const {
    return o.name == "adam" || o.name == "adamw";
  }

  /// One step with gradient `g` (for m) and second moment `sq` (for v; Adam only;
  /// undefined: g^2).
  void step(torch::Tensor g, const torch::Tensor& sq, double lr) {
    ++steps;
    // The common cases run the loops a training job's optimizer runs (fused_steps),
    // so one worker pushing every step to a holder's Adam trains as that job would,
    // to the bit.
    const int64_t n = params.numel();
    if (adam() && !o.amsgrad && (o.name == "adamw" || o.weight_decay == 0 || !sq.defined())) {
      if (!exp_avg.defined()) {
        exp_avg = torch::zeros_like(params);
        exp_avg_sq = torch::zeros_like(params);
      }
      const auto s = fused::make_adam_step(o.beta1, o.beta2, o.eps, lr, o.weight_decay,
                                           o.name == "adamw", steps);
      fused::adam(params.data_ptr<float>(), g.data_ptr<float>(), exp_avg.data_ptr<float>(),
                  exp_avg_sq.data_ptr<float>(), n, s, sq.defined() ? sq.data_ptr<float>() : nullptr);
      return;
    }
    if (!adam()) {
      fused::sgd_step s{};
      s.weight_decay = static_cast<float>(o.weight_decay);
      s.momentum = static_cast<float>(o.momentum);
      s.minus_lr = static_cast<float>(-lr);
      s.nesterov = o.nesterov;
      s.first = !momentum_buffer.defined();
      if (o.momentum != 0 && s.first)
        momentum_buffer = torch::empty_like(params);
      fused::sgd(params.data_ptr<float>(), g.data_ptr<float>(),
                 o.momentum != 0 ? momentum_buffer.data_ptr<float>() : nullptr, n, s);
      return;
    }
    // Adam with amsgrad, or with (coupled) weight decay and a mean square.
    torch::Tensor square = sq;
    if (o.name == "adamw") {
      params.mul_(1 - lr * o.weight_decay);
    } else if (o.weight_decay != 0) {
      // g + wd p: its square keeps the gradients' spread (sq - g^2) around the new mean.
      auto shifted = g.add(params, o.weight_decay);
      if (sq.defined())
        square = sq.sub(g * g).clamp_min_(0).add_(shifted * shifted);
      g = shifted;
    }
    if (!exp_avg.defined()) {
      exp_avg = torch::zeros_like(params);
      exp_avg_sq = torch::zeros_like(params);
      if (o.amsgrad)
        max_sq = torch::zeros_like(params);
    }
    exp_avg.mul_(o.beta1).add_(g, 1 - o.beta1);
    if (square.defined())
      exp_avg_sq.mul_(o.beta2).add_(square, 1 - o.beta2);
    else
      exp_avg_sq.mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
    const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(steps));
    const double bc2 = 1 - std::pow(o.beta2, static_cast<double>(steps));
    torch::Tensor denom;
    if (o.amsgrad) {
      torch::max_out(max_sq, exp_avg_sq, max_sq);
      denom = (max_sq.sqrt() / std::sqrt(bc2)).add_(o.eps);
    } else {
      denom = (exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(o.eps);
    }
    params.addcdiv_(exp_avg, denom, -lr / bc1);
  }

  std::vector<std::pair<const char*, torch::Tensor*>> state() {
    return {{"exp_avg", &exp_avg},
            {"exp_avg_sq", &exp_avg_sq},
            {"max_exp_avg_sq", &max_sq},
            {"momentum_buffer", &momentum_buffer}};
  }
};

namespace {

[[noreturn]] void bad(const std::string& why) {
  throw pnn::error(error_code::invalid_argument, why);
}

/// The settings a state belongs to: resuming it under others would mix two runs.
torch::Tensor settings_tensor(const optimizer_options& o) {
  return torch::tensor(std::vector<double>{o.beta1, o.beta2, o.eps, o.weight_decay, o.momentum,
                                           o.nesterov ? 1.0 : 0.0, o.amsgrad ? 1.0 : 0.0},
                       torch::kFloat64);
}

torch::Tensor tensor_of(const float* values, uint64_t count) {
  auto t = torch::empty({static_cast<int64_t>(count)}, torch::kFloat32);
  if (count > 0)
    std::memcpy(t.data_ptr<float>(), values, count * sizeof(float));
  return t;
}

} // namespace

flat_optimizer::flat_optimizer(const optimizer_options& options, const std::vector<char>& params)
  : d_(std::make_unique<impl>()) {
  if (params.size() % sizeof(float) != 0)
    bad("holder optimizer: " + std::to_string(params.size())
        + " parameter bytes are not whole float32 values");
  if (options.name != "adam" && options.name != "adamw" && options.name != "sgd")
    bad("holder optimizer '" + options.name + "': expected adam, adamw or sgd");
  d_->o = options;
  d_->params =
    tensor_of(reinterpret_cast<const float*>(params.data()), params.size() / sizeof(float));
}

flat_optimizer::~flat_optimizer() = default;

std::string flat_optimizer::step(const float* grad_sum, uint64_t count, int32_t steps, double lr,
                                 const float* square_sum) {
  auto& d = *d_;
  if (count != static_cast<uint64_t>(d.params.numel()))
    return std::to_string(count) + " gradient values, expected "
      + std::to_string(d.params.numel());
  if (steps < 1)
    return "a gradient of " + std::to_string(steps) + " steps (expected at least 1)";
  if (!std::isfinite(lr) || lr < 0)
    return "learning rate " + std::to_string(lr) + " (expected finite and >= 0)";
  torch::NoGradGuard no_grad;
  auto grad = tensor_of(grad_sum, count);
  torch::Tensor square;
  if (steps > 1)
    grad.div_(static_cast<double>(steps));
  // One check for NaN, Inf and values whose square overflows Adam's second moment.
  if (count > 0 && !(grad.abs().max().item<float>() <= 1e15f))
    return "a gradient value that is not finite or beyond 1e15 in magnitude";
  if (d.adam() && square_sum) {
    square = tensor_of(square_sum, count);
    if (steps > 1)
      square.div_(static_cast<double>(steps));
    if (count > 0 && !(square.min().item<float>() >= 0 && square.max().item<float>() <= 1e30f))
      return "a mean squared gradient that is negative, not finite or beyond 1e30";
  }
  // The steps change the parameters and the state in place: keep both until it is
  // known that they leave the parameters finite. (With the gradient bounded above,
  // the steps stay finite for any sane learning rate; this is the last line.)
  auto before = d.params.clone();
  std::vector<torch::Tensor> saved;
  for (auto& [name, t] : d.state())
    saved.push_back(t->defined() ? t->clone() : torch::Tensor());
  const int64_t steps_before = d.steps;
  for (int32_t i = 0; i < steps; ++i)
    d.step(grad, square, lr);
  if (count > 0 && !d.params.isfinite().all().item<bool>()) {
    d.params.copy_(before);
    size_t i = 0;
    for (auto& [name, t] : d.state())
      *t = saved[i++];
    d.steps = steps_before;
    return "the step would make a parameter non-finite (the parameters are kept)";
  }
  return "";
}

uint64_t flat_optimizer::count() const {
  return static_cast<uint64_t>(d_->params.numel());
}

std::vector<char> flat_optimizer::parameter_bytes() const {
  std::vector<char> out(static_cast<size_t>(d_->params.numel()) * sizeof(float));
  if (!out.empty())
    std::memcpy(out.data(), d_->params.data_ptr<float>(), out.size());
  return out;
}

std::string flat_optimizer::state() const {
  if (d_->steps == 0)
    return {};
  torch::serialize::OutputArchive archive;
  archive.write("optimizer", torch::tensor(std::vector<int64_t>(d_->o.name.begin(), d_->o.name.end())));
  archive.write("steps", torch::tensor({d_->steps}, torch::kInt64));
  archive.write("settings", settings_tensor(d_->o));
  for (auto& [name, t] : d_->state())
    if (t->defined())
      archive.write(name, *t);
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}

void flat_optimizer::load_state(const std::string& bytes) {
  auto& d = *d_;
  const auto what = "holder optimizer state (" + d.o.name + " over "
    + std::to_string(d.params.numel()) + " values): ";
  impl fresh;
  fresh.o = d.o;
  fresh.params = d.params;
  if (!bytes.empty()) {
    try {
      std::istringstream is(bytes);
      torch::serialize::InputArchive archive;
      archive.load_from(is);
      torch::Tensor name, steps;
      archive.read("optimizer", name);
      archive.read("steps", steps);
      std::string saved_name;
      for (int64_t i = 0; i < name.numel(); ++i)
        saved_name.push_back(static_cast<char>(name[i].item<int64_t>()));
      if (saved_name != d.o.name)
        bad(what + "saved by a " + saved_name + " optimizer");
      fresh.steps = steps.item<int64_t>();
      torch::Tensor settings;
      archive.read("settings", settings);
      if (!settings.equal(settings_tensor(d.o)))
        bad(what + "saved with other settings (betas, eps, weight_decay, momentum, nesterov, "
                   "amsgrad: --optimizer)");
      for (auto& [key, t] : fresh.state()) {
        torch::Tensor v;
        if (archive.try_read(key, v)) {
          if (v.scalar_type() != torch::kFloat32 || v.dim() != 1 || v.numel() != d.params.numel())
            bad(what + key + " holds " + std::to_string(v.numel()) + " values of another shape");
          *t = v.contiguous();
        }
      }
    } catch (const c10::Error& e) {
      std::string m = e.what_without_backtrace();
      bad(what + "does not fit: " + m.substr(0, m.find('\n')));
    }
    if (fresh.steps < 1)
      bad(what + std::to_string(fresh.steps) + " steps");
    for (auto& [key, t] : fresh.state()) {
      if (!t->defined())
        continue;
      if (!t->isfinite().all().item<bool>())
        bad(what + key + " holds a value that is not finite");
      if (key != std::string("exp_avg") && key != std::string("momentum_buffer")
          && t->lt(0).any().item<bool>())
        bad(what + key + " holds a negative value");
    }
    const bool needs_adam = fresh.adam();
    if (needs_adam && (!fresh.exp_avg.defined() || !fresh.exp_avg_sq.defined()
                       || (fresh.o.amsgrad && !fresh.max_sq.defined())))
      bad(what + "the moments are missing");
  }
  d.exp_avg = fresh.exp_avg;
  d.exp_avg_sq = fresh.exp_avg_sq;
  d.max_sq = fresh.max_sq;
  d.momentum_buffer = fresh.momentum_buffer;
  d.steps = fresh.steps;
}

std::vector<flat_tensor> flat_optimizer::state_tensors() const {
  std::vector<flat_tensor> out;
  for (auto& [name, t] : d_->state()) {
    if (!t->defined())
      continue;
    flat_tensor f{name, std::vector<float>(static_cast<size_t>(t->numel()))};
    if (!f.values.empty())
      std::memcpy(f.values.data(), t->data_ptr<float>(), f.values.size() * sizeof(float));
    out.push_back(std::move(f));
  }
  return out;
}

int64_t flat_optimizer::steps() const {
  return d_->steps;
}

const optimizer_options& flat_optimizer::options() const {
  return d_->o;
}

} // namespace pnn::training
