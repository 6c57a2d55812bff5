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
    members_ = options_.sync_members;
  }

  bool sync() const {
    return options_.sync_members > 0;
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

  /// Why `update` cannot be applied here ("" when it can).
  caf::error check(const param_update& update);

  /// Applies a checked update at once (asynchronous holder).
  caf::expected<push_ack> apply(const param_update& update);

  /// Adds a checked update to the round; answers through `promise` when it ends.
  void join(const param_update& update, caf::typed_response_promise<push_ack> promise);

  /// A member left the rounds.
  void leave();

  /// The old push (a param_blob delta) has no answer to defer: refused by a
  /// synchronous holder.
  caf::error reject_plain_push() {
    return reject(
      "a plain delta push, but this holder runs synchronous rounds (push a param_update)");
  }

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
  uint64_t staleness_of(const param_update& update) const {
    // Updates from other workers applied since the sender's parameters (its own are
    // in them already). A `seen` from the future would be a broken sender: 0.
    return status_.version - std::min(update.seen, status_.version);
  }
  std::string add_delta(const float* delta, uint64_t count, double scale);
  void end_round();
  void applied(uint64_t updates);
  void save();

  param_blob params_; ///< with an optimizer, its bytes are refreshed on pull and save
  std::shared_ptr<training::flat_optimizer> optimizer_; ///< owned by this actor alone
  holder_status status_;
  holder_options options_;
  uint64_t save_failures_ = 0;

  /// The round being gathered (synchronous holder).
  struct waiting_push {
    caf::typed_response_promise<push_ack> promise;
    uint64_t staleness = 0;
  };
  uint32_t members_ = 0;
  std::vector<waiting_push> waiting_;
  std::vector<float> round_sum_;     ///< the deltas, or the gradient sums
  std::vector<float> round_squares_; ///< squared gradients (Adam holder)
  bool round_squares_used_ = false;  ///< some push was of more than one step
  int64_t round_steps_ = 0;          ///< gradient steps in the round
  double round_lr_ = 0;              ///< the sum of the pushes' learning rates
};

caf::error holder_state::check(const param_update& update) {
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
  if (why.empty() && optimizer_
      && (update.steps < 1 || update.steps > std::max(1, options_.max_steps)))
    why = "gradients of " + std::to_string(update.steps) + " steps (expected 1.."
      + std::to_string(std::max(1, options_.max_steps)) + ")";
  if (why.empty() && optimizer_ && !(std::isfinite(update.lr) && update.lr >= 0))
    why = "learning rate " + std::to_string(update.lr) + " (expected finite and >= 0)";
  return why.empty() ? caf::error{} : reject(why);
}

caf::expected<push_ack> holder_state::apply(const param_update& update) {
  const uint64_t staleness = staleness_of(update);
  const double scale =
    options_.staleness_scaling && staleness > 1 ? 1.0 / static_cast<double>(staleness) : 1.0;
  const auto* values = reinterpret_cast<const float*>(update.bytes.data());
  const auto why = optimizer_
    ? optimizer_->step(
      values, update.count, update.steps, update.lr * scale,
      update.squares.empty() ? nullptr : reinterpret_cast<const float*>(update.squares.data()))
    : add_delta(values, update.count, scale * options_.delta_scale);
  if (!why.empty())
    return reject(why);
  params_.version = ++status_.version;
  applied(1);
  return push_ack{params_.version, staleness};
}

void holder_state::join(const param_update& update, caf::typed_response_promise<push_ack> promise) {
  const auto n = static_cast<size_t>(update.count);
  if (waiting_.empty()) {
    round_sum_.assign(n, 0.0f);
    round_squares_.clear();
    round_squares_used_ = false;
    round_steps_ = 0;
    round_lr_ = 0;
  }
  const auto* values = reinterpret_cast<const float*>(update.bytes.data());
  for (size_t i = 0; i < n; ++i)
    round_sum_[i] += values[i];
  if (optimizer_) {
    // Squares of every push, to give the optimizer their mean when the round's
    // steps are of several batches each; a one-step push's square is its own.
    if (round_squares_.empty())
      round_squares_.assign(n, 0.0f);
    const auto* sq =
      update.squares.empty() ? nullptr : reinterpret_cast<const float*>(update.squares.data());
    for (size_t i = 0; i < n; ++i)
      round_squares_[i] += sq ? sq[i] : values[i] * values[i];
    round_squares_used_ = round_squares_used_ || update.steps > 1;
    round_steps_ += update.steps;
    round_lr_ += update.lr;
  }
  waiting_.push_back({std::move(promise), staleness_of(update)});
  if (waiting_.size() >= members_)
    end_round();
}

void holder_state::leave() {
  if (members_ > 0)
    --members_;
  if (!waiting_.empty() && waiting_.size() >= members_)
    end_round();
}

/// Applies the mean of the round's updates as one version and answers them all. A
/// round of gradients over k steps per push on average takes k optimizer steps with
/// the round's mean gradient: with one step per push, one step of the large batch.
void holder_state::end_round() {
  const auto pushes = waiting_.size();
  std::string why;
  if (optimizer_) {
    const auto steps = static_cast<int32_t>(std::max<int64_t>(
      1, std::llround(static_cast<double>(round_steps_) / static_cast<double>(pushes))));
    // step() divides by `steps`: scale the sums so it takes the mean over all.
    const auto k =
      static_cast<float>(static_cast<double>(steps) / static_cast<double>(round_steps_));
    for (auto& v : round_sum_)
      v *= k;
    for (auto& v : round_squares_)
      v *= k;
    why = optimizer_->step(round_sum_.data(), round_sum_.size(), steps,
                           round_lr_ / static_cast<double>(pushes),
                           round_squares_used_ ? round_squares_.data() : nullptr);
  } else {
    why = add_delta(round_sum_.data(), round_sum_.size(), 1.0 / static_cast<double>(pushes));
  }
  auto waiting = std::move(waiting_);
  waiting_.clear();
  if (!why.empty()) {
    // Each update was sound, their mean is not: refuse them all, keep the parameters.
    for (auto& w : waiting)
      w.promise.deliver(reject("the round's mean: " + why));
    return;
  }
  params_.version = ++status_.version;
  ++status_.rounds;
  applied(pushes);
  for (auto& w : waiting)
    w.promise.deliver(push_ack{params_.version, w.staleness});
}

/// Counts applied updates and saves when a multiple of checkpoint_every was passed.
void holder_state::applied(uint64_t updates) {
  const auto before = status_.applied;
  status_.applied += updates;
  const auto every = options_.checkpoint_every;
  if (every > 0 && status_.applied / every != before / every)
    save();
}

/// Adds `scale` times the delta in place (both buffers hold count float32 values),
/// unless a sum overflows: finite updates of finite parameters can still make an
/// infinity, and one infinity would poison every worker's next pull.
std::string holder_state::add_delta(const float* delta, uint64_t count, double scale) {
  auto* p = reinterpret_cast<float*>(params_.bytes.data());
  const auto k = static_cast<float>(scale);
  for (uint64_t i = 0; i < count; ++i) {
    float v;
    std::memcpy(&v, delta + i, sizeof v);
    if (!std::isfinite(p[i] + k * v))
      return "the sum at value " + std::to_string(i) + " is not finite (the parameters are kept)";
  }
  for (uint64_t i = 0; i < count; ++i) {
    float v;
    std::memcpy(&v, delta + i, sizeof v);
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
      auto& st = self->state;
      param_update u;
      u.seen = delta.version;
      u.layout = delta.layout;
      u.count = delta.count;
      u.bytes = delta.bytes;
      if (auto err = st.check(u))
        return err;
      if (st.sync())
        return st.reject_plain_push();
      auto r = st.apply(u);
      if (!r)
        return std::move(r.error());
      return r->version;
    },
    [self](push_atom, const param_update& update) -> caf::result<push_ack> {
      auto& st = self->state;
      if (auto err = st.check(update))
        return err;
      if (!st.sync()) {
        auto r = st.apply(update);
        if (!r)
          return std::move(r.error());
        return *r;
      }
      auto promise = self->make_response_promise<push_ack>();
      st.join(update, promise);
      return promise;
    },
    [self](leave_atom) { self->state.leave(); },
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
