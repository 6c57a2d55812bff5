#include <pnn/actors/parameter_holder.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/records.hpp>

#include <caf/all.hpp>

#include <cstdio>
#include <cstring>

namespace pnn {

struct holder_state::impl {
  param_blob params;
  holder_status status;
  holder_options options;
  uint64_t save_failures = 0;
};

namespace {

constexpr char magic[8] = {'P', 'N', 'N', 'H', 'O', 'L', 'D', '1'};

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + static_cast<size_t>(i)])) << (8 * i);
  return v;
}

} // namespace

std::string holder_file_bytes(const param_blob& params) {
  std::string out(magic, sizeof magic);
  put_u64(out, params.version);
  put_u64(out, params.layout);
  put_u64(out, params.count);
  out.append(params.bytes.begin(), params.bytes.end());
  return out;
}

void write_holder_file(const std::filesystem::path& file, const param_blob& params) {
  training::write_file_atomic(file, holder_file_bytes(params));
}

param_blob read_holder_file(const std::filesystem::path& file) {
  const auto text = training::read_text_file(file);
  auto bad = [&](const std::string& why) {
    return pnn::error(error_code::invalid_argument, file.string() + ": " + why);
  };
  if (text.size() < 32 || text.compare(0, sizeof magic, magic, sizeof magic) != 0)
    throw bad("not a parameter holder file (expected PNNHOLD1 and a 32-byte header)");
  param_blob b;
  b.version = get_u64(text, 8);
  b.layout = get_u64(text, 16);
  b.count = get_u64(text, 24);
  if (b.count > (text.size() - 32) / sizeof(float) || text.size() - 32 != b.count * sizeof(float))
    throw bad("truncated or padded: " + std::to_string(text.size() - 32) + " bytes of values for "
              + std::to_string(b.count) + " floats");
  b.bytes.assign(text.begin() + 32, text.end());
  auto why = training::check_floats(b.bytes, b.count);
  if (!why.empty())
    throw bad(why);
  return b;
}

holder_state::holder_state() : d(std::make_unique<impl>()) {
}
holder_state::~holder_state() = default;

holder_actor::behavior_type parameter_holder(holder_actor::stateful_pointer<holder_state> self,
                                             param_blob initial, holder_options options) {
  self->state.d->options = std::move(options);
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
      if (d.options.checkpoint_every > 0 && d.status.applied % d.options.checkpoint_every == 0) {
        try {
          write_holder_file(d.options.checkpoint_file, d.params);
        } catch (const std::exception& e) {
          // Training goes on; the failure is said once (the disk may fill up).
          if (d.save_failures++ == 0)
            std::fprintf(stderr, "pnn: parameter holder: %s\n", e.what());
        }
      }
      return d.params.version;
    },
    [=](status_atom) -> holder_status { return self->state.d->status; },
  };
}

holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options) {
  auto why = training::check_floats(initial.bytes, initial.count);
  if (!why.empty())
    throw pnn::error(error_code::invalid_argument, "parameter holder: initial parameters: " + why);
  if (options.checkpoint_every > 0 && options.checkpoint_file.empty())
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: checkpoints every " + std::to_string(options.checkpoint_every)
                       + " updates need a checkpoint file");
  return sys.spawn(parameter_holder, std::move(initial), std::move(options));
}

} // namespace pnn
