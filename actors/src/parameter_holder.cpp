#include <pnn/actors/parameter_holder.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>

#include <cstring>

namespace pnn {

struct holder_state::impl {
  param_blob params;
  holder_status status;
};

holder_state::holder_state() : d(std::make_unique<impl>()) {
}
holder_state::~holder_state() = default;

holder_actor::behavior_type parameter_holder(holder_actor::stateful_pointer<holder_state> self,
                                             param_blob initial) {
  auto why = training::check_floats(initial.bytes, initial.count);
  if (!why.empty()) // spawn_holder checks first; a direct spawn ends here
    self->quit(make_error(error_code::invalid_argument, "parameter holder: " + why));
  self->state.d->params = std::move(initial);
  self->state.d->status.version = self->state.d->params.version;
  return {
    [=](pull_atom) -> param_blob {
      auto& d = *self->state.d;
      ++d.status.pulls;
      return d.params;
    },
    [=](push_atom, const param_blob& update) -> caf::result<uint64_t> {
      auto& d = *self->state.d;
      std::string why;
      if (update.layout != d.params.layout || update.count != d.params.count)
        why = "layout " + std::to_string(update.layout) + " with " + std::to_string(update.count)
              + " values, expected " + std::to_string(d.params.layout) + " with "
              + std::to_string(d.params.count);
      else
        why = training::check_floats(update.bytes, update.count);
      if (!why.empty()) {
        ++d.status.rejected;
        return make_error(error_code::invalid_argument, "update rejected: " + why);
      }
      // Adds the delta in place (both buffers hold count float32 values).
      auto* p = reinterpret_cast<float*>(d.params.bytes.data());
      for (uint64_t i = 0; i < update.count; ++i) {
        float v;
        std::memcpy(&v, update.bytes.data() + i * sizeof(float), sizeof v);
        p[i] += v;
      }
      ++d.status.applied;
      d.params.version = ++d.status.version;
      return d.params.version;
    },
    [=](status_atom) -> holder_status { return self->state.d->status; },
  };
}

holder_actor spawn_holder(caf::actor_system& sys, param_blob initial) {
  auto why = training::check_floats(initial.bytes, initial.count);
  if (!why.empty())
    throw pnn::error(error_code::invalid_argument, "parameter holder: initial parameters: " + why);
  return sys.spawn(parameter_holder, std::move(initial));
}

} // namespace pnn
