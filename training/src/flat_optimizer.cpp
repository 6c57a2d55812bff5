#include <pnn/training/flat_optimizer.hpp>

#include <pnn/error.hpp>

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <sstream>

namespace pnn::training {

struct flat_optimizer::impl {
  optimizer_options options;
  torch::Tensor params; ///< 1-D float32, requires grad (the optimizer's one parameter)
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  int64_t steps = 0;
};

namespace {

[[noreturn]] void bad(const std::string& why) {
  throw pnn::error(error_code::invalid_argument, why);
}

} // namespace

flat_optimizer::flat_optimizer(const optimizer_options& options, const std::vector<char>& params)
  : d_(std::make_unique<impl>()) {
  if (params.size() % sizeof(float) != 0)
    bad("holder optimizer: " + std::to_string(params.size())
        + " parameter bytes are not whole float32 values");
  d_->options = options;
  const auto n = static_cast<int64_t>(params.size() / sizeof(float));
  d_->params = torch::empty({n}, torch::kFloat32);
  if (n > 0)
    std::memcpy(d_->params.data_ptr<float>(), params.data(), params.size());
  d_->params.set_requires_grad(true);
  d_->optimizer = make_optimizer(options, {d_->params});
}

flat_optimizer::~flat_optimizer() = default;

std::string flat_optimizer::step(const float* grad_sum, uint64_t count, int32_t steps, double lr) {
  auto& d = *d_;
  if (count != static_cast<uint64_t>(d.params.numel()))
    return std::to_string(count) + " gradient values, expected "
      + std::to_string(d.params.numel());
  if (steps < 1)
    return "a gradient of " + std::to_string(steps) + " steps (expected at least 1)";
  if (!std::isfinite(lr) || lr < 0)
    return "learning rate " + std::to_string(lr) + " (expected finite and >= 0)";
  torch::NoGradGuard no_grad;
  const auto n = static_cast<int64_t>(count);
  auto grad = torch::empty({n}, torch::kFloat32);
  std::memcpy(grad.data_ptr<float>(), grad_sum, count * sizeof(float));
  if (steps > 1)
    grad.div_(static_cast<double>(steps));
  // One check for NaN, Inf and values whose square overflows Adam's second moment.
  if (n > 0 && !(grad.abs().max().item<float>() <= 1e15f))
    return "a gradient value that is not finite or beyond 1e15 in magnitude";
  // The step changes the parameters in place: keep them until it is known to leave
  // them finite. (With the gradient bounded above, Adam's and SGD's steps stay
  // finite for any sane learning rate; this is the last line.)
  auto before = d.params.clone();
  d.params.mutable_grad() = grad;
  set_learning_rate(*d.optimizer, lr);
  for (int32_t i = 0; i < steps; ++i)
    d.optimizer->step();
  d.params.mutable_grad() = torch::Tensor();
  if (n > 0 && !d.params.isfinite().all().item<bool>()) {
    d.params.copy_(before);
    d.optimizer = make_optimizer(d.options, {d.params});
    d.steps = 0;
    return "the step would make a parameter non-finite (the parameters are kept, the "
           "optimizer's moments start afresh)";
  }
  d.steps += steps;
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
  d_->optimizer->save(archive);
  archive.write("pnn_steps", torch::tensor({d_->steps}, torch::kInt64));
  std::ostringstream os;
  archive.save_to(os);
  return os.str();
}

void flat_optimizer::load_state(const std::string& bytes) {
  auto fresh = make_optimizer(d_->options, {d_->params});
  int64_t steps = 0;
  if (!bytes.empty()) {
    try {
      std::istringstream is(bytes);
      torch::serialize::InputArchive archive;
      archive.load_from(is);
      fresh->load(archive);
      torch::Tensor t;
      archive.read("pnn_steps", t);
      steps = t.item<int64_t>();
    } catch (const c10::Error& e) {
      std::string what = e.what_without_backtrace();
      bad("holder optimizer state does not fit a " + d_->options.name + " optimizer over "
          + std::to_string(d_->params.numel()) + " values: " + what.substr(0, what.find('\n')));
    }
  }
  d_->optimizer = std::move(fresh);
  d_->steps = steps;
  // Every state tensor must match the parameters' size (a damaged file may not).
  for (const auto& t : state_tensors())
    if (t.values.size() != count())
      bad("holder optimizer state: " + t.name + " holds " + std::to_string(t.values.size())
          + " values, expected " + std::to_string(count()));
}

std::vector<flat_tensor> flat_optimizer::state_tensors() const {
  std::vector<flat_tensor> out;
  auto copy = [&](const char* name, const torch::Tensor& t) {
    if (!t.defined())
      return;
    auto c = t.contiguous().to(torch::kFloat32);
    flat_tensor f{name, std::vector<float>(static_cast<size_t>(c.numel()))};
    if (!f.values.empty())
      std::memcpy(f.values.data(), c.data_ptr<float>(), f.values.size() * sizeof(float));
    out.push_back(std::move(f));
  };
  auto& states = d_->optimizer->state();
  auto it = states.find(c10::guts::to_string(d_->params.unsafeGetTensorImpl()));
  if (it == states.end())
    return out;
  const auto* state = it->second.get();
  if (auto* a = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
    copy("exp_avg", a->exp_avg());
    copy("exp_avg_sq", a->exp_avg_sq());
    copy("max_exp_avg_sq", a->max_exp_avg_sq());
  } else if (auto* w = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
    copy("exp_avg", w->exp_avg());
    copy("exp_avg_sq", w->exp_avg_sq());
    copy("max_exp_avg_sq", w->max_exp_avg_sq());
  } else if (auto* s = dynamic_cast<const torch::optim::SGDParamState*>(state)) {
    copy("momentum_buffer", s->momentum_buffer());
  }
  return out;
}

int64_t flat_optimizer::steps() const {
  return d_->steps;
}

const optimizer_options& flat_optimizer::options() const {
  return d_->options;
}

} // namespace pnn::training
