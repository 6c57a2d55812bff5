#include <pnn/actors/parameter_holder.hpp>

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/compression.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/metrics.hpp>
#include <pnn/training/flat_optimizer.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>

namespace pnn {

namespace {

class holder_state {
public:
  void init(param_blob initial, holder_options options,
            std::shared_ptr<training::flat_optimizer> opt) {
    options_ = std::move(options);
    options_.optimizer_state.clear(); // now in `opt`
    params_ = std::make_shared<param_blob>(std::move(initial));
    optimizer_ = std::move(opt);
    status_.version = params_->version;
    members_ = options_.sync_members;
  }

  bool sync() const {
    return options_.sync_members > 0;
  }

  param_blob pull() {
    return pull_ref();
  }

  void count_pull() {
    ++status_.pulls;
    ++metrics().holder_pulls;
  }
  uint64_t version() const {
    return status_.version;
  }

  /// The parameters a pull answers, counted as one (valid until the next change).
  const param_blob& pull_ref() {
    count_pull();
    if (optimizer_) // (never shared: share() copies them)
      params_->bytes = optimizer_->parameter_bytes();
    return *params_;
  }

  /// The parameters a bulk port's pull sends outside the lock, counted as one pull.
  /// Without an optimizer, the current buffer itself: a change does not touch a
  /// shared buffer but writes the next version into another (next_buffer). With
  /// one, whose parameters live in the optimizer, a copy per version.
  std::shared_ptr<const param_blob> share() {
    if (!optimizer_) {
      count_pull();
      return params_;
    }
    if (copy_ && copy_->version == status_.version)
      count_pull();
    else
      copy_ = std::make_shared<const param_blob>(pull_ref());
    return copy_;
  }

  /// bulk_shard::begin_sum for this holder: raw deltas to an asynchronous holder
  /// without an optimizer, one sum at a time (a second would rarely find the base
  /// unchanged at its end; it goes the usual way).
  bool begin_sum(const param_update& u, bulk_shard::sum& into) {
    if (!summing_.expired() || optimizer_ || sync() || u.gradient || u.encoding != 0
        || !u.indices.empty() || !u.squares.empty() || u.layout != params_->layout
        || u.count != params_->count || u.bytes.size() != u.count * sizeof(float))
      return false;
    into.base = params_;
    into.out = spare_buffer();
    summing_ = into.out;
    into.scale = static_cast<float>(scale_of(staleness_of(u)) * options_.delta_scale);
    return true;
  }

  /// bulk_shard::end_sum: the sum becomes the next version when it was made from
  /// the current one and is finite; else the update is checked and applied (or
  /// refused) as any push is.
  caf::expected<push_ack> end_sum(bulk_shard::sum done, const param_update& u, float values_max_abs,
                                  float sum_max_abs) {
    summing_.reset();
    if (done.base != params_ || done.base->version != status_.version || sum_max_abs < 0) {
      if (!spare_ || spare_.use_count() > 1) // keep the buffer no pull reads
        spare_ = std::move(done.out);
      done.base.reset();
      if (auto err = check(u, values_max_abs))
        return err;
      return apply(u, values_max_abs);
    }
    const uint64_t staleness = staleness_of(u);
    done.base.reset();
    spare_ = std::move(params_);
    params_ = std::move(done.out);
    params_max_abs_ = sum_max_abs;
    params_->version = ++status_.version;
    ++status_.streamed;
    applied(1);
    return push_ack{params_->version, staleness};
  }

  /// `pushed`, widened first when it is compressed, once its count is ours (a
  /// claimed count is never allocated before it is checked); `err` says why one
  /// does not decode.
  const param_update& widen(const param_update& pushed, caf::error& err) {
    if ((pushed.encoding == 0 && pushed.indices.empty()) || pushed.count != count())
      return pushed;
    decoded_ = pushed;
    auto why = decode_update(decoded_);
    if (!why.empty())
      err = reject(why);
    return decoded_;
  }

  param_blob current() {
    if (optimizer_)
      params_->bytes = optimizer_->parameter_bytes();
    return *params_;
  }

  /// Why `update` cannot be applied here ("" when it can).
  /// `values_max_abs` >= 0: the update's values are known finite, of at most that
  /// magnitude (a bulk port checked them as they arrived), so not checked again.
  caf::error check(const param_update& update, float values_max_abs = -1);

  /// Applies a checked update at once (asynchronous holder).
  caf::expected<push_ack> apply(const param_update& update, float values_max_abs = -1);

  /// Adds an update from `sender` to the round, `refused` (check's error) or not: a
  /// refused push takes its sender's turn too, and its refusal is answered with the
  /// others' answers when the round ends.
  void join(const param_update& update, caf::error refused, caf::actor_addr sender,
            caf::typed_response_promise<push_ack> promise);

  /// Member `who` left the rounds (it finished, or was lost).
  void leave(const caf::actor_addr& who);

  uint64_t count() const {
    return params_->count;
  }
  uint64_t layout() const {
    return params_->layout;
  }

  /// An update whose encoding does not decode.
  caf::error refuse(const std::string& why) {
    return reject(why);
  }

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
    ++metrics().holder_rejections;
    return make_error(error_code::invalid_argument, "update rejected: " + why);
  }
  uint64_t staleness_of(const param_update& update) const {
    // Updates from other workers applied since the sender's parameters (its own are
    // in them already). A `seen` from the future would be a broken sender: 0.
    return status_.version - std::min(update.seen, status_.version);
  }
  double scale_of(uint64_t staleness) const {
    return options_.staleness_scaling && staleness > 1 ? 1.0 / static_cast<double>(staleness) : 1.0;
  }
  std::string add_delta(const float* delta, uint64_t count, double scale,
                        float delta_max_abs = -1);
  /// A buffer of the parameters' size that no pull reads (its values not set).
  std::shared_ptr<param_blob> spare_buffer() {
    std::shared_ptr<param_blob> b;
    if (spare_ && spare_.use_count() == 1) {
      // Its last reader let go with a release: its reads happen before our writes.
      std::atomic_thread_fence(std::memory_order_acquire);
      b = std::move(spare_);
    } else {
      b = std::make_shared<param_blob>();
    }
    b->layout = params_->layout;
    b->count = params_->count;
    b->version = params_->version;
    b->bytes.resize(params_->bytes.size());
    return b;
  }
  /// Where the next version's values go: the current buffer when no pull reads it,
  /// else a spare one.
  std::shared_ptr<param_blob> next_buffer() {
    if (params_.use_count() == 1) {
      std::atomic_thread_fence(std::memory_order_acquire); // as in spare_buffer
      return params_;
    }
    return spare_buffer();
  }
  void end_round();
  void applied(uint64_t updates);
  void save();

  param_update decoded_; ///< the last compressed push, widened (its buffers reused)
  /// The parameters' largest magnitude after the last delta (negative: unknown).
  float params_max_abs_ = -1;
  /// The current version, shared with the bulk pulls that send it (a shared one is
  /// never changed). With an optimizer its bytes are refreshed on pull and save,
  /// and it is never shared.
  std::shared_ptr<param_blob> params_;
  std::shared_ptr<param_blob> spare_;      ///< the version before, to write the next into
  std::shared_ptr<const param_blob> copy_; ///< with an optimizer: the last bulk pull's
  /// The buffer of the bulk push being summed (expired when none is: the port
  /// drops it when its connection fails).
  std::weak_ptr<param_blob> summing_;
  std::shared_ptr<training::flat_optimizer> optimizer_; ///< owned by this actor alone
  holder_status status_;
  holder_options options_;
  uint64_t save_failures_ = 0;

  /// The round being gathered (synchronous holder).
  struct waiting_push {
    caf::typed_response_promise<push_ack> promise;
    caf::actor_addr sender;
    caf::error refused; ///< answered instead of an ack
    uint64_t staleness = 0;
  };
  bool round_full() const {
    return !waiting_.empty() && waiting_.size() - left_in_round_ >= members_;
  }
  uint32_t members_ = 0;          ///< workers still in the rounds
  std::vector<waiting_push> waiting_;
  size_t accepted_ = 0;           ///< pushes of the round that were not refused
  size_t left_in_round_ = 0;      ///< pushes of the round from workers that left since
  std::vector<float> round_sum_;     ///< the deltas, or the gradient sums
  std::vector<float> round_squares_; ///< squared gradients (Adam holder)
  bool round_squares_used_ = false;  ///< some push was of more than one step
  int64_t round_steps_ = 0;          ///< gradient steps in the round
  double round_lr_ = 0;              ///< the sum of the pushes' learning rates
};

/// The optimizer's own limits on one push (flat_optimizer::step checks them too):
/// checked per push, so that one push beyond them is refused alone, not the round
/// it would be averaged into.
std::string gradient_limits(const param_update& update) {
  const auto* g = reinterpret_cast<const float*>(update.bytes.data());
  const auto* sq =
    update.squares.empty() ? nullptr : reinterpret_cast<const float*>(update.squares.data());
  const double steps = std::max(1, update.steps);
  for (uint64_t i = 0; i < update.count; ++i) {
    if (!(std::abs(g[i]) / steps <= 1e15))
      return "a gradient value that is not finite or beyond 1e15 in magnitude";
    if (sq && !(sq[i] >= 0 && sq[i] / steps <= 1e30))
      return "a mean squared gradient that is negative, not finite or beyond 1e30";
  }
  return "";
}

caf::error holder_state::check(const param_update& update, float values_max_abs) {
  std::string why;
  if (update.layout != params_->layout || update.count != params_->count)
    why = "layout " + std::to_string(update.layout) + " with " + std::to_string(update.count)
      + " values, expected " + std::to_string(params_->layout) + " with "
      + std::to_string(params_->count);
  else if (update.gradient != static_cast<bool>(optimizer_))
    why = optimizer_ ? "a parameter delta, but this holder runs the optimizer (push gradients)"
                     : "gradients, but this holder runs no optimizer (push parameter deltas)";
  else if (!(values_max_abs >= 0 && update.bytes.size() == update.count * sizeof(float)))
    why = training::check_floats(update.bytes, update.count);
  if (why.empty() && !update.squares.empty())
    why = !optimizer_ ? "squared gradients, but this holder runs no optimizer"
                      : training::check_floats(update.squares, update.count);
  if (why.empty() && optimizer_
      && (update.steps < 1 || update.steps > std::max(1, options_.max_steps)))
    why = "gradients of " + std::to_string(update.steps) + " steps (expected 1.."
      + std::to_string(std::max(1, options_.max_steps)) + ")";
  // The optimizer's own checks, needed up front only where one push's values go
  // into a round's mean (an asynchronous step refuses them itself, in one pass).
  if (why.empty() && optimizer_ && sync() && !(std::isfinite(update.lr) && update.lr >= 0))
    why = "learning rate " + std::to_string(update.lr) + " (expected finite and >= 0)";
  if (why.empty() && optimizer_ && sync())
    why = gradient_limits(update);
  return why.empty() ? caf::error{} : reject(why);
}

caf::expected<push_ack> holder_state::apply(const param_update& update, float values_max_abs) {
  const uint64_t staleness = staleness_of(update);
  const double scale = scale_of(staleness);
  const auto* values = reinterpret_cast<const float*>(update.bytes.data());
  const auto why = optimizer_
    ? optimizer_->step(
      values, update.count, update.steps, update.lr * scale,
      update.squares.empty() ? nullptr : reinterpret_cast<const float*>(update.squares.data()))
    : add_delta(values, update.count, scale * options_.delta_scale, values_max_abs);
  if (!why.empty())
    return reject(why);
  params_->version = ++status_.version;
  applied(1);
  return push_ack{params_->version, staleness};
}

void holder_state::join(const param_update& update, caf::error refused, caf::actor_addr sender,
                        caf::typed_response_promise<push_ack> promise) {
  const auto n = static_cast<size_t>(params_->count);
  if (waiting_.empty()) {
    round_sum_.assign(n, 0.0f);
    round_squares_.clear();
    round_squares_used_ = false;
    round_steps_ = 0;
    round_lr_ = 0;
    accepted_ = 0;
    left_in_round_ = 0;
  }
  if (!refused) {
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
    ++accepted_;
  }
  waiting_.push_back(
    {std::move(promise), std::move(sender), std::move(refused), staleness_of(update)});
  if (round_full())
    end_round();
}

void holder_state::leave(const caf::actor_addr& who) {
  if (members_ > 0)
    --members_;
  // Its push in this round stays in it, but no longer stands for a member.
  for (const auto& w : waiting_)
    if (w.sender && w.sender == who)
      ++left_in_round_;
  if (round_full())
    end_round();
}

/// Applies the mean of the round's updates as one version and answers them all. A
/// round of gradients over k steps per push on average takes k optimizer steps with
/// the round's mean gradient: with one step per push, one step of the large batch.
void holder_state::end_round() {
  auto waiting = std::move(waiting_);
  waiting_.clear();
  const auto pushes = accepted_;
  std::string why;
  if (pushes > 0 && optimizer_) {
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
  } else if (pushes > 0) {
    why = add_delta(round_sum_.data(), round_sum_.size(), 1.0 / static_cast<double>(pushes));
  }
  if (pushes == 0 || !why.empty()) {
    // Nothing to apply, or each update was sound and their mean is not: refuse them
    // all and keep the parameters.
    for (auto& w : waiting)
      w.promise.deliver(w.refused ? std::move(w.refused) : reject("the round's mean: " + why));
    return;
  }
  params_->version = ++status_.version;
  ++status_.rounds;
  applied(pushes);
  for (auto& w : waiting) {
    if (w.refused)
      w.promise.deliver(std::move(w.refused));
    else
      w.promise.deliver(push_ack{params_->version, w.staleness});
  }
}

/// Counts applied updates and saves when a multiple of checkpoint_every was passed.
void holder_state::applied(uint64_t updates) {
  const auto before = status_.applied;
  status_.applied += updates;
  metrics().holder_updates += updates;
  const auto every = options_.checkpoint_every;
  if (every > 0 && status_.applied / every != before / every)
    save();
}

/// Adds `scale` times the delta in place (both buffers hold count float32 values),
/// unless a sum overflows: finite updates of finite parameters can still make an
/// infinity, and one infinity would poison every worker's next pull.
std::string holder_state::add_delta(const float* delta, uint64_t count, double scale,
                                    float delta_max_abs) {
  const auto* p = reinterpret_cast<const float*>(params_->bytes.data());
  const auto k = static_cast<float>(scale);
  // When the largest magnitudes of the parameters and of the delta bound every sum
  // well below float's range, no sum can overflow: one pass. Else first every sum
  // is checked, in blocks without an early exit (vectorised), then added: the
  // parameters change all at once or not at all.
  const bool bounded = delta_max_abs >= 0 && params_max_abs_ >= 0
    && static_cast<double>(params_max_abs_) + std::abs(scale) * delta_max_abs
      <= 0.5 * static_cast<double>(std::numeric_limits<float>::max());
  constexpr uint64_t block = 4096;
  for (uint64_t start = 0; !bounded && start < count; start += block) {
    const uint64_t end = std::min(count, start + block);
    uint32_t bad = 0;
    for (uint64_t i = start; i < end; ++i) {
      float v;
      std::memcpy(&v, delta + i, sizeof v);
      const float sum = p[i] + k * v;
      bad |= static_cast<uint32_t>(!(std::fabs(sum) <= std::numeric_limits<float>::max()));
    }
    if (bad == 0)
      continue;
    for (uint64_t i = start; i < end; ++i) {
      float v;
      std::memcpy(&v, delta + i, sizeof v);
      if (!std::isfinite(p[i] + k * v))
        return "the sum at value " + std::to_string(i)
          + " is not finite (the parameters are kept)";
    }
  }
  // Into the current buffer, or beside it while a pull still sends it.
  auto next = next_buffer();
  params_max_abs_ = training::add_scaled(p, reinterpret_cast<const char*>(delta), k,
                                         reinterpret_cast<float*>(next->bytes.data()), count);
  if (next != params_) {
    spare_ = std::move(params_);
    params_ = std::move(next);
  }
  if (count != params_->count)
    params_max_abs_ = -1;
  return "";
}

void holder_state::save() {
  try {
    std::string state;
    if (optimizer_) {
      params_->bytes = optimizer_->parameter_bytes();
      state = optimizer_->state();
    }
    options_.save(*params_, state);
  } catch (const std::exception& e) {
    // Training goes on; the failure is said once (the disk may fill up).
    if (save_failures_++ == 0)
      std::fprintf(stderr, "pnn: parameter holder: %s\n", e.what());
  }
}

/// A holder's state with the lock its actor and its bulk port's connections
/// (bulk_wire.hpp) take: one holder, two ways in.
class holder_core : public bulk_shard {
public:
  std::mutex mtx;
  holder_state st;

  std::shared_ptr<const param_blob> pull() override {
    std::lock_guard<std::mutex> guard{mtx};
    return st.share();
  }
  bool begin_sum(const param_update& update, sum& into) override {
    std::lock_guard<std::mutex> guard{mtx};
    return st.begin_sum(update, into);
  }
  caf::expected<push_ack> end_sum(sum done, const param_update& update, float values_max_abs,
                                  float sum_max_abs) override {
    std::lock_guard<std::mutex> guard{mtx};
    return st.end_sum(std::move(done), update, values_max_abs, sum_max_abs);
  }
  caf::expected<push_ack> push(const param_update& update, float values_max_abs) override {
    std::lock_guard<std::mutex> guard{mtx};
    if (st.sync())
      return st.refuse("a push on the bulk port, but this holder runs synchronous rounds");
    caf::error err;
    const auto& u = st.widen(update, err);
    if (&u != &update)
      values_max_abs = -1; // what arrived was not the values
    if (!err)
      err = st.check(u, values_max_abs);
    if (err)
      return err;
    return st.apply(u, values_max_abs);
  }
  uint64_t layout() const override {
    return layout_;
  }
  uint64_t count() const override {
    return count_;
  }
  void fix_shape() {
    layout_ = st.layout();
    count_ = st.count();
  }

private:
  uint64_t layout_ = 0;
  uint64_t count_ = 0;
};

struct holder_actor_state {
  static inline const char* name = "pnn.parameter_holder";
  std::shared_ptr<holder_core> core;
  std::shared_ptr<bulk_server> port; ///< serves `core` under `token` too
  std::string token;
  ~holder_actor_state() {
    if (port)
      port->remove(token);
  }
};

holder_actor::behavior_type parameter_holder(holder_actor::stateful_pointer<holder_actor_state> self,
                                             std::shared_ptr<holder_core> core,
                                             std::shared_ptr<bulk_server> port, std::string token) {
  self->state.core = std::move(core);
  self->state.port = std::move(port);
  self->state.token = std::move(token);
  auto* c = self->state.core.get();
  return {
    [c](pull_atom) -> param_blob {
      std::lock_guard<std::mutex> guard{c->mtx};
      return c->st.pull();
    },
    [c](push_atom, const param_blob& delta) -> caf::result<uint64_t> {
      std::lock_guard<std::mutex> guard{c->mtx};
      auto& st = c->st;
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
    [self, c](push_atom, const param_update& pushed) -> caf::result<push_ack> {
      std::lock_guard<std::mutex> guard{c->mtx};
      auto& st = c->st;
      caf::error err;
      const auto& update = st.widen(pushed, err);
      if (!err)
        err = st.check(update);
      if (err && !st.sync())
        return err;
      if (!st.sync()) {
        auto r = st.apply(update);
        if (!r)
          return std::move(r.error());
        return *r;
      }
      // (Before the promise: making it takes the sender out of the message.)
      auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
      auto promise = self->make_response_promise<push_ack>();
      st.join(update, std::move(err), std::move(sender), promise);
      return promise;
    },
    [c](leave_atom, const caf::actor_addr& who) {
      std::lock_guard<std::mutex> guard{c->mtx};
      c->st.leave(who);
    },
    [c](status_atom) -> holder_status {
      std::lock_guard<std::mutex> guard{c->mtx};
      return c->st.status();
    },
    [c](checkpoint_atom) -> caf::result<param_blob, std::string> {
      std::lock_guard<std::mutex> guard{c->mtx};
      return {c->st.current(), c->st.optimizer_state()};
    },
  };
}

} // namespace

std::vector<uint64_t> shard_bounds(const std::vector<uint64_t>& tensor_values, size_t shards) {
  uint64_t total = 0;
  std::vector<uint64_t> ends; // each tensor's end, the cuts at tensor boundaries
  for (auto n : tensor_values) {
    total += n;
    ends.push_back(total);
  }
  if (shards < 1 || shards > total)
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: " + std::to_string(shards) + " shards of "
                       + std::to_string(total) + " values (expected 1 to "
                       + std::to_string(total) + ")");
  const auto s = static_cast<uint64_t>(shards);
  const double share = static_cast<double>(total) / static_cast<double>(s);
  std::vector<uint64_t> bounds{0};
  for (uint64_t k = 1; k < s; ++k) {
    // Room for one value in each shard before and after this cut.
    const uint64_t low = bounds.back() + 1;
    const uint64_t high = total - (s - k);
    const double ideal = share * static_cast<double>(k);
    uint64_t cut = std::clamp<uint64_t>(static_cast<uint64_t>(std::llround(ideal)), low, high);
    double nearest = share / 4; // a tensor boundary within a quarter of a share wins
    for (auto e : ends) {
      const double d = std::abs(static_cast<double>(e) - ideal);
      if (e >= low && e <= high && d <= nearest) {
        nearest = d;
        cut = e;
      }
    }
    bounds.push_back(cut);
  }
  bounds.push_back(total);
  return bounds;
}

holder_options holder_options_from(const holder_spec& spec) {
  holder_options o;
  if (!spec.optimizer.empty()) {
    if (!(std::isfinite(spec.lr) && spec.lr > 0))
      throw pnn::error(error_code::invalid_argument,
                       "parameter holder: learning rate " + std::to_string(spec.lr)
                         + " (expected finite and > 0)");
    o.optimizer = training::optimizer_options::parse(spec.optimizer, spec.lr);
  }
  o.optimizer_state = spec.optimizer_state;
  o.checkpoint_every = spec.checkpoint_every;
  o.staleness_scaling = spec.staleness_scaling;
  if (!(std::isfinite(spec.delta_scale) && spec.delta_scale > 0 && spec.delta_scale <= 1))
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: delta scale " + std::to_string(spec.delta_scale)
                       + " (expected 0 < s <= 1)");
  o.delta_scale = spec.delta_scale;
  if (spec.max_steps < 1 || spec.max_steps > 1024)
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: max steps " + std::to_string(spec.max_steps)
                       + " (expected 1..1024)");
  o.max_steps = spec.max_steps;
  o.sync_members = spec.sync_members;
  return o;
}

holder_home_actor spawn_holder_home(
  caf::actor_system& sys, uint32_t mine, param_blob shape,
  std::function<void(uint32_t shard, const param_blob& params, const std::string& state)> save) {
  return sys.spawn([mine, shape = std::move(shape), save = std::move(save)](
                     holder_home_actor::pointer) -> holder_home_actor::behavior_type {
    return {
      [=](checkpoint_atom, uint32_t shard, const param_blob& params, const std::string& state) {
        std::string why;
        if (shard != mine)
          why = "shard " + std::to_string(shard) + " sent to shard " + std::to_string(mine)
            + "'s home";
        else if (params.layout != shape.layout || params.count != shape.count)
          why = "shard " + std::to_string(shard) + ": layout or count of another shard";
        else
          why = training::check_floats(params.bytes, params.count);
        if (!why.empty()) {
          std::fprintf(stderr, "pnn: parameter holder: dropped a checkpoint from another host: %s\n",
                       why.c_str());
          return;
        }
        try {
          save(shard, params, state);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "pnn: parameter holder: shard %u: %s\n", shard, e.what());
        }
      },
    };
  });
}

namespace {

std::shared_ptr<holder_core> make_core(param_blob initial, holder_options options) {
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
  auto core = std::make_shared<holder_core>();
  core->st.init(std::move(initial), std::move(options), std::move(opt));
  core->fix_shape();
  return core;
}

} // namespace

std::shared_ptr<bulk_shard> make_holder_shard(param_blob initial, holder_options options) {
  if (options.sync_members > 0)
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: a synchronous holder on a bulk port");
  return make_core(std::move(initial), std::move(options));
}

holder_actor spawn_holder(caf::actor_system& sys, param_blob initial, holder_options options,
                          const std::shared_ptr<bulk_server>& port, bulk_endpoint* endpoint) {
  if (port && options.sync_members > 0)
    throw pnn::error(error_code::invalid_argument,
                     "parameter holder: a synchronous holder on a bulk port");
  auto core = make_core(std::move(initial), std::move(options));
  std::string token;
  if (port) {
    token = port->add(core);
    if (endpoint) {
      endpoint->port = port->port();
      endpoint->token = token;
    }
  }
  return sys.spawn(parameter_holder, std::move(core), port, std::move(token));
}

} // namespace pnn
