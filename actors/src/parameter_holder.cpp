#include <pnn/actors/parameter_holder.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

namespace pnn {

namespace {

class holder_state {
public:
  static inline const char* name = "pnn.parameter_holder";

  void init(param_blob initial, holder_options options) {
    options_ = std::move(options);
    params_ = std::move(initial);
    status_.version = params_.version;
  }

  param_blob pull() {
    ++status_.pulls;
    return params_;
  }

  caf::result<uint64_t> push(const param_blob& update);

  holder_status status() const {
    return status_;
  }

private:
  void save();

  param_blob params_;
  holder_status status_;
  holder_options options_;
  uint64_t save_failures_ = 0;
};

caf::result<uint64_t> holder_state::push(const param_blob& update) {
  std::string why;
  if (update.layout != params_.layout || update.count != params_.count)
    why = "layout " + std::to_string(update.layout) + " with " + std::to_string(update.count)
      + " values, expected " + std::to_string(params_.layout) + " with "
      + std::to_string(params_.count);
  else
    why = training::check_floats(update.bytes, update.count);
  if (!why.empty()) {
    ++status_.rejected;
    return make_error(error_code::invalid_argument, "update rejected: " + why);
  }
  // Adds the delta in place (both buffers hold count float32 values), unless a sum
  // overflows: finite updates of finite parameters can still make an infinity, and
  // one infinity would poison every worker's next pull.
  auto* p = reinterpret_cast<float*>(params_.bytes.data());
  const auto* u = update.bytes.data();
  for (uint64_t i = 0; i < update.count; ++i) {
    float v;
    std::memcpy(&v, u + i * sizeof(float), sizeof v);
    if (!std::isfinite(p[i] + v)) {
      ++status_.rejected;
      return make_error(error_code::invalid_argument,
                        "update rejected: the sum at value " + std::to_string(i)
                          + " is not finite (the parameters are kept)");
    }
  }
  for (uint64_t i = 0; i < update.count; ++i) {
    float v;
    std::memcpy(&v, u + i * sizeof(float), sizeof v);
    p[i] += v;
  }
  ++status_.applied;
  params_.version = ++status_.version;
  if (options_.checkpoint_every > 0 && status_.applied % options_.checkpoint_every == 0)
    save();
  return params_.version;
}

void holder_state::save() {
  try {
    options_.save(params_);
  } catch (const std::exception& e) {
    // Training goes on; the failure is said once (the disk may fill up).
    if (save_failures_++ == 0)
      std::fprintf(stderr, "pnn: parameter holder: %s\n", e.what());
  }
}

holder_actor::behavior_type parameter_holder(holder_actor::stateful_pointer<holder_state> self,
                                             param_blob initial, holder_options options) {
  self->state.init(std::move(initial), std::move(options));
  return {
    [self](pull_atom) -> param_blob { return self->state.pull(); },
    [self](push_atom, const param_blob& update) -> caf::result<uint64_t> {
      return self->state.push(update);
    },
    [self](status_atom) -> holder_status { return self->state.status(); },
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
  return sys.spawn(parameter_holder, std::move(initial), std::move(options));
}

} // namespace pnn
