#include <pnn/actors/parameter_holder.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/training/flat_optimizer.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace pnn {

namespace {

class holder_state {
public:
  static inline const char* name = "pnn.parameter_holder";

  void init(param_blob initial, holder_options options,
            std::shared_ptr<training::flat_optimizer> opt) {
    options_ = std::move(options);
    options_.optimizer_state.clear(); // now in `opt`
    params_ = std::move(initial);
    optimizer_ = std::move(opt);
    status_.version = params_.version;
  }

  param_blob pull() {
    ++status_.pulls;
    return current();
  }

  param_blob current() {
    if (optimizer_)
      params_.bytes = optimizer_->parameter_bytes();
    return params_;
  }

  caf::expected<push_ack> push(const param_update& update);

  std::string optimizer_state() const {
    return optimizer_ ? optimizer_->state() : std::string{};
  }

  holder_status status() const {
    return status_;
  }

private:
  caf::error reject(const std::string& why) {
    ++status_.rejected;
    return make_error(error_code::invalid_argument, "update rejected: " + why);
  }
  std::string add_delta(const param_update& update, double scale);
  void save();

  param_blob params_; ///< with an optimizer, its bytes are refreshed on pull and save
  std::shared_ptr<training::flat_optimizer> optimizer_; ///< owned by this actor alone
  holder_status status_;
  holder_options options_;
  uint64_t save_failures_ = 0;
};

caf::expected<push_ack> holder_state::push(const param_update& update) {
  std::string why;
  if (update.layout != params_.layout || update.count != params_.count)
    why = "layout " + std::to_string(update.layout) + " with " + std::to_string(update.count)
      + " values, expected " + std::to_string(params_.layout) + " with "
      + std::to_string(params_.count);
  else if (update.gradient != static_cast<bool>(optimizer_))
    why = optimizer_ ? "a parameter delta, but this holder runs the optimizer (push gradients)"
                     : "gradients, but this holder runs no optimizer (push parameter deltas)";
  else
    why = training::check_floats(update.bytes, update.count);
  if (why.empty() && !update.squares.empty())
    why = !optimizer_ ? "squared gradients, but this holder runs no optimizer"
                      : training::check_floats(update.squares, update.count);
  if (!why.empty())
    return reject(why);
  // Updates from other workers applied since the sender's parameters (its own are
  // in them already). A `seen` from the future would be a broken sender: no scaling.
  const uint64_t staleness = status_.version - std::min(update.seen, status_.version);
  const double scale =
    options_.staleness_scaling && staleness > 1 ? 1.0 / static_cast<double>(staleness) : 1.0;
  if (optimizer_) {
    if (update.steps < 1 || update.steps > std::max(1, options_.max_steps))
      return reject("gradients of " + std::to_string(update.steps) + " steps (expected 1.."
                    + std::to_string(std::max(1, options_.max_steps)) + ")");
    why = optimizer_->step(
      reinterpret_cast<const float*>(update.bytes.data()), update.count, update.steps,
      update.lr * scale,
      update.squares.empty() ? nullptr : reinterpret_cast<const float*>(update.squares.data()));
  } else {
    why = add_delta(update, scale * options_.delta_scale);
  }
  if (!why.empty())
    return reject(why);
  ++status_.applied;
  params_.version = ++status_.version;
  if (options_.checkpoint_every > 0 && status_.applied % options_.checkpoint_every == 0)
    save();
  return push_ack{params_.version, staleness};
}

/// Adds `scale` times the delta in place (both buffers hold count float32 values),
/// unless a sum overflows: finite updates of finite parameters can still make an
/// infinity, and one infinity would poison every worker's next pull.
std::string holder_state::add_delta(const param_update& update, double scale) {
  auto* p = reinterpret_cast<float*>(params_.bytes.data());
  const auto* u = update.bytes.data();
  const auto k = static_cast<float>(scale);
  for (uint64_t i = 0; i < update.count; ++i) {
    float v;
    std::memcpy(&v, u + i * sizeof(float), sizeof v);
    if (!std::isfinite(p[i] + k * v))
      return "the sum at value " + std::to_string(i) + " is not finite (the parameters are kept)";
  }
  for (uint64_t i = 0; i < update.count; ++i) {
    float v;
    std::memcpy(&v, u + i * sizeof(float), sizeof v);
    p[i] += k * v;
  }
  return "";
}

void holder_state::save() {
  try {
    std::string state;
    if (optimizer_) {
      params_.bytes = optimizer_->parameter_bytes();
      state = optimizer_->state();
    }
    options_.save(params_, state);
  } catch (const std::exception& e) {
    // Training goes on; the failure is said once (the disk may fill up).
    if (save_failures_++ == 0)
      std::fprintf(stderr, "pnn: parameter holder: %s\n", e.what());
  }
}

holder_actor::behavior_type parameter_holder(holder_actor::stateful_pointer<holder_state> self,
                                             param_blob initial, holder_options options,
                                             std::shared_ptr<training::flat_optimizer> opt) {
  // (A shared_ptr because spawn arguments must be copyable; spawn_holder hands it
  // over and keeps no copy.)
  self->state.init(std::move(initial), std::move(options), std::move(opt));
  return {
    [self](pull_atom) -> param_blob { return self->state.pull(); },
    [self](push_atom, const param_blob& delta) -> caf::result<uint64_t> {
      param_update u;
      u.seen = delta.version;
      u.layout = delta.layout;
      u.count = delta.count;
      u.bytes = delta.bytes;
      auto r = self->state.push(u);
      if (!r)
        return std::move(r.error());
      return r->version;
    },
    [self](push_atom, const param_update& update) -> caf::result<push_ack> {
      auto r = self->state.push(update);
      if (!r)
        return std::move(r.error());
      return *r;
    },
    [self](status_atom) -> holder_status { return self->state.status(); },
    [self](checkpoint_atom) -> caf::result<param_blob, std::string> {
      return {self->state.current(), self->state.optimizer_state()};
    },
  };
}

} // namespace

holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options) {
  auto why = training::check_floats(initial.bytes, initial.count);
  if (!why.empty())
    throw pnn::error(error_code::invalid_argument, "parameter holder: initial parameters: " + why);
  if (options.checkpoint_every > 0 && !options.save)
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: checkpoints every "
                       + std::to_string(options.checkpoint_every)
                       + " updates need a save function");
  std::shared_ptr<training::flat_optimizer> opt;
  if (options.optimizer) {
    opt = std::make_shared<training::flat_optimizer>(*options.optimizer, initial.bytes);
    opt->load_state(options.optimizer_state); // throws when it does not fit
  } else if (!options.optimizer_state.empty()) {
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: an optimizer state but no optimizer to run it");
  }
  return sys.spawn(parameter_holder, std::move(initial), std::move(options), std::move(opt));
}

} // namespace pnn
