#include <pnn/training/schedules.hpp>

#include <pnn/error.hpp>
#include <pnn/training/spec.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace pnn::training {

namespace {

constexpr double pi = 3.14159265358979323846;

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, "--scheduler: " + msg);
}

/// Python's modulo: the result has the sign of the divisor.
int64_t py_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

class constant_schedule : public lr_schedule {
public:
  explicit constant_schedule(double lr) : lr_schedule(lr, false) {
  }
  void step() override {
  }
  nlohmann::json state() const override {
    return {{"lr", lr_}};
  }
  void load_state(const nlohmann::json& s) override {
    lr_ = s.at("lr").get<double>();
  }
};

/// CosineAnnealingLR, PyTorch 1.13's recursive form (keeps going past T_max).
class cosine_schedule : public lr_schedule {
public:
  cosine_schedule(double lr, bool per_batch, int64_t t_max, double eta_min)
    : lr_schedule(lr, per_batch), t_max_(t_max), eta_min_(eta_min) {
  }
  void step() override {
    ++last_;
    const double t = static_cast<double>(t_max_);
    if (py_mod(last_ - 1 - t_max_, 2 * t_max_) == 0)
      lr_ = lr_ + (base_lr_ - eta_min_) * (1 - std::cos(pi / t)) / 2;
    else
      lr_ = (1 + std::cos(pi * static_cast<double>(last_) / t))
          / (1 + std::cos(pi * static_cast<double>(last_ - 1) / t)) * (lr_ - eta_min_)
        + eta_min_;
  }
  nlohmann::json state() const override {
    return {{"lr", lr_}, {"last", last_}};
  }
  void load_state(const nlohmann::json& s) override {
    lr_ = s.at("lr").get<double>();
    last_ = s.at("last").get<int64_t>();
  }

private:
  int64_t t_max_;
  double eta_min_;
  int64_t last_ = 0;
};

/// CosineAnnealingWarmRestarts stepped without an explicit epoch.
class warm_schedule : public lr_schedule {
public:
  warm_schedule(double lr, bool per_batch, int64_t t_0, int64_t t_mult, double eta_min)
    : lr_schedule(lr, per_batch), t_i_(t_0), t_mult_(t_mult), eta_min_(eta_min) {
  }
  void step() override {
    ++t_cur_;
    if (t_cur_ >= t_i_) {
      t_cur_ -= t_i_;
      t_i_ *= t_mult_;
    }
    lr_ = eta_min_
      + (base_lr_ - eta_min_)
        * (1 + std::cos(pi * static_cast<double>(t_cur_) / static_cast<double>(t_i_))) / 2;
  }
  nlohmann::json state() const override {
    return {{"lr", lr_}, {"t_cur", t_cur_}, {"t_i", t_i_}};
  }
  void load_state(const nlohmann::json& s) override {
    lr_ = s.at("lr").get<double>();
    t_cur_ = s.at("t_cur").get<int64_t>();
    t_i_ = s.at("t_i").get<int64_t>();
  }

private:
  int64_t t_i_;
  int64_t t_mult_;
  double eta_min_;
  int64_t t_cur_ = 0;
};

/// MultiStepLR (and StepLR as milestones every step_size), recursive like PyTorch.
class decay_schedule : public lr_schedule {
public:
  decay_schedule(double lr, bool per_batch, std::vector<int64_t> milestones, int64_t every,
                 double gamma)
    : lr_schedule(lr, per_batch), milestones_(std::move(milestones)), every_(every), gamma_(gamma) {
  }
  void step() override {
    ++last_;
    if (every_ > 0) {
      if (last_ % every_ == 0)
        lr_ *= gamma_;
      return;
    }
    // A milestone listed twice decays twice, as PyTorch's Counter does.
    for (auto m : milestones_)
      if (m == last_)
        lr_ *= gamma_;
  }
  nlohmann::json state() const override {
    return {{"lr", lr_}, {"last", last_}};
  }
  void load_state(const nlohmann::json& s) override {
    lr_ = s.at("lr").get<double>();
    last_ = s.at("last").get<int64_t>();
  }

private:
  std::vector<int64_t> milestones_;
  int64_t every_;
  double gamma_;
  int64_t last_ = 0;
};

/// ReduceLROnPlateau, mode min, relative threshold; observes one loss per epoch.
class plateau_schedule : public lr_schedule {
public:
  plateau_schedule(double lr, const schedule_options& o) : lr_schedule(lr, false), o_(o) {
  }
  void step() override {
  }
  void observe(double loss) override {
    if (!std::isfinite(loss))
      loss = INFINITY;
    if (loss < best_ * (1 - o_.threshold)) {
      best_ = loss;
      bad_epochs_ = 0;
    } else {
      ++bad_epochs_;
    }
    if (cooldown_counter_ > 0) {
      --cooldown_counter_;
      bad_epochs_ = 0;
    }
    if (bad_epochs_ > o_.patience) {
      double next = std::max(lr_ * o_.factor, o_.min_lr);
      if (lr_ - next > 1e-8)
        lr_ = next;
      cooldown_counter_ = o_.cooldown;
      bad_epochs_ = 0;
    }
  }
  nlohmann::json state() const override {
    return {{"lr", lr_},
            {"best", std::isfinite(best_) ? best_ : 1e308},
            {"bad_epochs", bad_epochs_},
            {"cooldown_counter", cooldown_counter_}};
  }
  void load_state(const nlohmann::json& s) override {
    lr_ = s.at("lr").get<double>();
    best_ = s.at("best").get<double>();
    if (best_ >= 1e308)
      best_ = INFINITY;
    bad_epochs_ = s.at("bad_epochs").get<int64_t>();
    cooldown_counter_ = s.at("cooldown_counter").get<int64_t>();
  }

private:
  schedule_options o_;
  double best_ = INFINITY;
  int64_t bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
};

/// Another schedule with a linear warm-up over its first `warmup_steps` batches;
/// stepped after every batch (a per-epoch schedule inside at every epoch's end).
class warmup_schedule : public lr_schedule {
public:
  warmup_schedule(std::unique_ptr<lr_schedule> inner, double warmup_steps)
    : lr_schedule(inner->lr(), true), inner_(std::move(inner)), warmup_steps_(warmup_steps) {
    update();
  }
  void step() override {
    ++done_;
    if (inner_->per_batch())
      inner_->step();
    update();
  }
  void end_epoch() override {
    inner_->end_epoch();
    update();
  }
  void observe(double loss) override {
    inner_->observe(loss);
  }
  nlohmann::json state() const override {
    return {{"warmup_done", done_}, {"inner", inner_->state()}};
  }
  void load_state(const nlohmann::json& s) override {
    done_ = s.at("warmup_done").get<int64_t>();
    inner_->load_state(s.at("inner"));
    update();
  }

private:
  void update() {
    const double share = (static_cast<double>(done_) + 1.0) / warmup_steps_;
    lr_ = share < 1 ? inner_->lr() * share : inner_->lr();
  }
  std::unique_ptr<lr_schedule> inner_;
  double warmup_steps_;
  int64_t done_ = 0; ///< batches done
};

int64_t positive(double v, const std::string& key) {
  if (!(v >= 1) || v != std::floor(v))
    bad(key + "=" + std::to_string(v) + ": expected a whole number >= 1");
  return static_cast<int64_t>(v);
}

} // namespace

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"none",      "cosine", "warm",
                                              "multistep", "step",   "plateau"};
  return names;
}

schedule_options schedule_options::parse(const std::string& text) {
  auto s = spec::parse(text, "--scheduler");
  schedule_options o;
  o.name = s.name;
  auto unit = s.take_string("unit", "batch");
  if (unit == "batch")
    o.unit = step_unit::batch;
  else if (unit == "epoch")
    o.unit = step_unit::epoch;
  else
    bad("unit=" + unit + ": expected batch or epoch");
  o.warmup = s.take_number("warmup", 0);
  if (!(std::isfinite(o.warmup) && o.warmup >= 0))
    bad("warmup=" + std::to_string(o.warmup) + ": expected epochs >= 0");
  if (o.warmup > 0 && o.name == "plateau")
    bad("warmup: not with plateau, which decays on each epoch's loss");
  if (o.name == "none") {
  } else if (o.name == "cosine") {
    if (s.params.count("t_max"))
      o.t_max = positive(s.take_number("t_max", 0), "t_max");
    o.eta_min = s.take_number("eta_min", 0);
  } else if (o.name == "warm") {
    if (s.params.count("t_0"))
      o.t_0 = positive(s.take_number("t_0", 0), "t_0");
    o.t_mult = positive(s.take_number("t_mult", 1), "t_mult");
    o.eta_min = s.take_number("eta_min", 0);
  } else if (o.name == "multistep") {
    for (double m : s.take_numbers("milestones", {}))
      o.milestones.push_back(positive(m, "milestones"));
    o.gamma = s.take_number("gamma", 0.1);
  } else if (o.name == "step") {
    if (s.params.count("step_size"))
      o.step_size = positive(s.take_number("step_size", 0), "step_size");
    o.gamma = s.take_number("gamma", 0.1);
  } else if (o.name == "plateau") {
    o.factor = s.take_number("factor", 0.1);
    o.patience = static_cast<int64_t>(s.take_number("patience", 10));
    o.threshold = s.take_number("threshold", 1e-4);
    o.cooldown = static_cast<int64_t>(s.take_number("cooldown", 0));
    o.min_lr = s.take_number("min_lr", 0);
    if (!(o.factor > 0 && o.factor < 1) || o.patience < 0 || o.cooldown < 0)
      bad("plateau needs 0 < factor < 1, patience >= 0, cooldown >= 0");
  } else {
    bad("'" + o.name + "': expected none, cosine, warm, multistep, step or plateau");
  }
  s.expect_consumed();
  if (o.eta_min < 0 || o.gamma <= 0)
    bad(text + ": eta_min must be >= 0 and gamma > 0");
  return o;
}

namespace {

std::unique_ptr<lr_schedule> make_plain_schedule(const schedule_options& o, double base_lr,
                                                 int64_t steps_per_epoch, int64_t epochs) {
  const bool per_batch = o.unit == schedule_options::step_unit::batch;
  const int64_t unit_per_epoch = per_batch ? std::max<int64_t>(1, steps_per_epoch) : 1;
  const int64_t run = std::max<int64_t>(1, unit_per_epoch * std::max<int64_t>(1, epochs));
  if (o.name == "none")
    return std::make_unique<constant_schedule>(base_lr);
  if (o.name == "cosine")
    return std::make_unique<cosine_schedule>(base_lr, per_batch, o.t_max > 0 ? o.t_max : run,
                                             o.eta_min);
  if (o.name == "warm")
    return std::make_unique<warm_schedule>(base_lr, per_batch, o.t_0 > 0 ? o.t_0 : unit_per_epoch,
                                           o.t_mult, o.eta_min);
  if (o.name == "multistep") {
    auto ms = o.milestones;
    if (ms.empty())
      ms = {std::max<int64_t>(1, run / 2), std::max<int64_t>(1, run * 3 / 4)};
    return std::make_unique<decay_schedule>(base_lr, per_batch, ms, 0, o.gamma);
  }
  if (o.name == "step")
    return std::make_unique<decay_schedule>(
      base_lr, per_batch, std::vector<int64_t>{},
      o.step_size > 0 ? o.step_size : std::max<int64_t>(1, run / 3), o.gamma);
  if (o.name == "plateau")
    return std::make_unique<plateau_schedule>(base_lr, o);
  bad("'" + o.name + "': expected none, cosine, warm, multistep, step or plateau");
}

} // namespace

std::unique_ptr<lr_schedule> make_schedule(const schedule_options& o, double base_lr,
                                           int64_t steps_per_epoch, int64_t epochs) {
  if (o.warmup > 0 && o.name == "plateau")
    bad("warmup: not with plateau, which decays on each epoch's loss");
  auto plain = make_plain_schedule(o, base_lr, steps_per_epoch, epochs);
  if (!(o.warmup > 0))
    return plain;
  const auto per_epoch = std::max<int64_t>(1, steps_per_epoch);
  return std::make_unique<warmup_schedule>(std::move(plain),
                                           o.warmup * static_cast<double>(per_epoch));
}

} // namespace pnn::training
