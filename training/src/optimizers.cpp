#include <pnn/training/optimizers.hpp>

#include <pnn/error.hpp>
#include <pnn/training/spec.hpp>

#include "fused_steps.hpp"

#include <torch/torch.h>

#include <cmath>

namespace pnn::training {

namespace {

namespace optim = torch::optim;

bool fusable(const torch::Tensor& t) {
  return t.defined() && t.scalar_type() == torch::kFloat32 && t.device().is_cpu()
    && t.layout() == torch::kStrided && t.is_contiguous();
}

float* floats(const torch::Tensor& t) {
  return t.data_ptr<float>();
}

/// Marks `p` changed in place, as LibTorch's in-place ops do: a graph that saved it
/// then fails in backward instead of using the new values.
void written(const torch::Tensor& p) {
  p.unsafeGetTensorImpl()->bump_version();
}

using state_map = ska::flat_hash_map<std::string, std::unique_ptr<optim::OptimizerParamState>>;

/// The state of `p` in an optimizer's map (LibTorch's key), made by `make` if none.
template <class State, class Make>
State& state_of(state_map& map, const torch::Tensor& p, Make make) {
  auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
  auto it = map.find(key);
  if (it == map.end())
    it = map.emplace(key, make()).first;
  return static_cast<State&>(*it->second);
}

/// The loss of `closure` (none without one), computed with gradients on, as
/// LibTorch's steps do.
torch::Tensor loss_of(const optim::Optimizer::LossClosure& closure) {
  if (!closure)
    return {};
  torch::AutoGradMode enable_grad(true);
  return closure();
}

/// True when the loops cover every parameter with a gradient: `group_ok` accepts
/// its group's options, and it, its gradient and its state tensors (`tensors` of
/// its State, if it has one) are contiguous float32 CPU tensors of its size.
template <class State, class GroupOk, class Tensors>
bool loops_cover(const std::vector<optim::OptimizerParamGroup>& groups, const state_map& state,
                 GroupOk group_ok, Tensors tensors) {
  for (const auto& group : groups) {
    if (!group_ok(group.options()))
      return false;
    for (const auto& p : group.params()) {
      if (!p.grad().defined())
        continue;
      std::vector<torch::Tensor> all{p, p.grad()};
      auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      if (it != state.end())
        for (auto& t : tensors(static_cast<const State&>(*it->second)))
          all.push_back(std::move(t));
      for (const auto& t : all)
        if (!fusable(t) || t.numel() != p.numel())
          return false;
    }
  }
  return true;
}

/// LibTorch's Adam (Base = Adam) or AdamW whose step runs one loop per parameter
/// tensor (fused::adam) instead of LibTorch's ten tensor operations: the same state,
/// checkpoints and results to float rounding. Anything the loop does not cover
/// (amsgrad, tensors that are not contiguous float32 on the CPU) takes LibTorch's
/// step.
template <class Base, class Options, class State, bool Decoupled>
class fused_adam final : public Base {
public:
  using Base::Base;

  torch::Tensor step(optim::Optimizer::LossClosure closure = nullptr) override {
    if (!covered())
      return Base::step(std::move(closure));
    torch::NoGradGuard no_grad;
    auto loss = loss_of(closure);
    for (auto& group : this->param_groups_) {
      const auto& o = static_cast<const Options&>(group.options());
      const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
      for (auto& p : group.params()) {
        if (!p.grad().defined())
          continue;
        auto& state = state_of<State>(this->state_, p, [&] {
          auto s = std::make_unique<State>();
          s->step(0);
          s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
          return s;
        });
        state.step(state.step() + 1);
        const auto s = fused::make_adam_step(beta1, beta2, o.eps(), o.lr(), o.weight_decay(),
                                             Decoupled, state.step());
        fused::adam(floats(p), floats(p.grad()), floats(state.exp_avg()),
                    floats(state.exp_avg_sq()), p.numel(), s);
        written(p);
      }
    }
    return loss;
  }

private:
  bool covered() const {
    return loops_cover<State>(
      this->param_groups_, this->state_,
      [](const optim::OptimizerOptions& o) { return !static_cast<const Options&>(o).amsgrad(); },
      [](const State& st) { return std::vector<torch::Tensor>{st.exp_avg(), st.exp_avg_sq()}; });
  }
};

/// LibTorch's SGD with its step as one loop per parameter tensor (fused::sgd); the
/// same state and results to float rounding. Dampening and tensors the loop does
/// not cover take LibTorch's step.
class fused_sgd final : public optim::SGD {
public:
  using SGD::SGD;

  torch::Tensor step(LossClosure closure = nullptr) override {
    if (!covered())
      return SGD::step(std::move(closure));
    torch::NoGradGuard no_grad;
    auto loss = loss_of(closure);
    for (auto& group : param_groups_) {
      const auto& o = static_cast<const optim::SGDOptions&>(group.options());
      for (auto& p : group.params()) {
        if (!p.grad().defined())
          continue;
        fused::sgd_step s{};
        s.weight_decay = static_cast<float>(o.weight_decay());
        s.momentum = static_cast<float>(o.momentum());
        s.minus_lr = static_cast<float>(-1 * o.lr());
        s.nesterov = o.nesterov();
        float* buf = nullptr;
        if (o.momentum() != 0) {
          s.first = false;
          auto& state = state_of<optim::SGDParamState>(state_, p, [&] {
            s.first = true;
            auto st = std::make_unique<optim::SGDParamState>();
            st->momentum_buffer(torch::empty_like(p, torch::MemoryFormat::Preserve));
            return st;
          });
          buf = state.momentum_buffer().data_ptr<float>();
        }
        fused::sgd(p.data_ptr<float>(), p.grad().data_ptr<float>(), buf, p.numel(), s);
        written(p);
      }
    }
    return loss;
  }

private:
  bool covered() const {
    return loops_cover<optim::SGDParamState>(
      param_groups_, state_,
      [](const optim::OptimizerOptions& o) {
        return static_cast<const optim::SGDOptions&>(o).dampening() == 0;
      },
      [](const optim::SGDParamState& st) { return std::vector<torch::Tensor>{st.momentum_buffer()}; });
  }
};

} // namespace

optimizer_options optimizer_options::parse(const std::string& text, double lr) {
  auto s = spec::parse(text, "--optimizer");
  optimizer_options o;
  o.name = s.name;
  o.lr = lr;
  if (!(lr > 0))
    throw pnn::error(error_code::invalid_argument,
                     "--lr " + std::to_string(lr) + ": expected a positive learning rate");
  if (o.name == "adam" || o.name == "adamw") {
    o.weight_decay = s.take_number("weight_decay", o.name == "adamw" ? 1e-2 : 0.0);
    o.beta1 = s.take_number("beta1", o.beta1);
    o.beta2 = s.take_number("beta2", o.beta2);
    o.eps = s.take_number("eps", o.eps);
    o.amsgrad = s.take_bool("amsgrad", false);
  } else if (o.name == "sgd") {
    o.momentum = s.take_number("momentum", 0.0);
    o.nesterov = s.take_bool("nesterov", false);
    o.weight_decay = s.take_number("weight_decay", 0.0);
    if (o.nesterov && o.momentum <= 0)
      throw pnn::error(error_code::invalid_argument,
                       "--optimizer " + text + ": nesterov needs momentum > 0");
  } else {
    throw pnn::error(error_code::invalid_argument,
                     "--optimizer '" + o.name + "': expected adam, adamw or sgd");
  }
  s.expect_consumed();
  if (o.weight_decay < 0 || o.momentum < 0)
    throw pnn::error(error_code::invalid_argument,
                     "--optimizer " + text + ": weight_decay and momentum must be >= 0");
  return o;
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const optimizer_options& o,
                                                        std::vector<torch::Tensor> params) {
  if (o.name == "adam")
    return std::make_unique<fused_adam<optim::Adam, optim::AdamOptions, optim::AdamParamState, false>>(std::move(params),
                                         optim::AdamOptions(o.lr)
                                           .betas({o.beta1, o.beta2})
                                           .eps(o.eps)
                                           .weight_decay(o.weight_decay)
                                           .amsgrad(o.amsgrad));
  if (o.name == "adamw")
    return std::make_unique<fused_adam<optim::AdamW, optim::AdamWOptions, optim::AdamWParamState, true>>(std::move(params),
                                          optim::AdamWOptions(o.lr)
                                            .betas({o.beta1, o.beta2})
                                            .eps(o.eps)
                                            .weight_decay(o.weight_decay)
                                            .amsgrad(o.amsgrad));
  if (o.name == "sgd")
    return std::make_unique<fused_sgd>(std::move(params),
                                        optim::SGDOptions(o.lr)
                                          .momentum(o.momentum)
                                          .nesterov(o.nesterov)
                                          .weight_decay(o.weight_decay));
  throw pnn::error(error_code::invalid_argument,
                   "optimizer '" + o.name + "': expected adam, adamw or sgd");
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    group.options().set_lr(lr);
}

double learning_rate(const torch::optim::Optimizer& optimizer) {
  return optimizer.param_groups().at(0).options().get_lr();
}

} // namespace pnn::training
