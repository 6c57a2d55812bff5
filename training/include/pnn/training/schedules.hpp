#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pnn::training {

/// A learning-rate schedule by name, with its settings. Lengths (t_max, t_0,
/// milestones, step_size) count steps in `unit`; 0 or empty picks a default from
/// the run's length (see make_schedule).
struct schedule_options {
  std::string name = "none"; ///< none, cosine, warm, multistep, step, plateau
  enum class step_unit { batch, epoch } unit = step_unit::batch;
  int64_t t_max = 0;               ///< cosine: half period (default: the whole run)
  double eta_min = 0;              ///< cosine, warm: lowest lr
  int64_t t_0 = 0;                 ///< warm: first period (default: one epoch)
  int64_t t_mult = 1;              ///< warm: period growth after each restart
  std::vector<int64_t> milestones; ///< multistep (default: 1/2 and 3/4 of the run)
  double gamma = 0.1;              ///< multistep, step: decay factor
  int64_t step_size = 0;           ///< step (default: a third of the run)
  double factor = 0.1;             ///< plateau: decay factor
  int64_t patience = 10;           ///< plateau: epochs without improvement before decaying
  double threshold = 1e-4;         ///< plateau: relative improvement that counts
  int64_t cooldown = 0;            ///< plateau: epochs to wait after a decay
  double min_lr = 0;               ///< plateau: lowest lr
  /// Any schedule but plateau: over the first `warmup` epochs (a fraction allowed)
  /// the learning rate rises linearly to the schedule's, by batch: the schedule's
  /// times (batches done + 1) / (warmup x batches per epoch) (Goyal et al. 2017).
  /// The schedule is then stepped per batch (per_batch() is true); one inside that
  /// steps per epoch does so at end_epoch().
  double warmup = 0;

  /// Parses "cosine", "cosine:t_max=10,eta_min=1e-6,unit=epoch", "multistep:milestones=5/8",
  /// "cosine:warmup=0.5".
  /// Throws pnn::error on unknown names or parameters.
  static schedule_options parse(const std::string& text);
};

/// A learning-rate schedule with PyTorch 1.13's arithmetic (the same recursive
/// formulas, so values agree to the last bits that double precision keeps).
class lr_schedule {
public:
  virtual ~lr_schedule() = default;

  /// The learning rate for the next optimizer step.
  double lr() const {
    return lr_;
  }

  /// True when step() is called after every batch, false after every epoch.
  bool per_batch() const {
    return per_batch_;
  }

  /// One batch or one epoch (per `per_batch()`) has passed.
  virtual void step() = 0;

  /// An epoch ended (after its last batch's step()): a per-epoch schedule steps.
  /// Epochs are said, not counted in batches: from a shared batch queue a worker's
  /// epoch has as many batches as it took.
  virtual void end_epoch() {
    if (!per_batch_)
      step();
  }

  /// An epoch ended with this validation (or training) loss; only plateau uses it.
  virtual void observe(double /*loss*/) {
  }

  /// State for checkpoints.
  virtual nlohmann::json state() const = 0;
  virtual void load_state(const nlohmann::json& state) = 0;

protected:
  lr_schedule(double base_lr, bool per_batch)
    : lr_(base_lr), base_lr_(base_lr), per_batch_(per_batch) {
  }

  double lr_;
  double base_lr_;
  bool per_batch_;
};

/// Builds a schedule starting at `base_lr` for a run of `epochs` epochs of
/// `steps_per_epoch` batches (used for the defaults). Throws pnn::error on bad settings.
std::unique_ptr<lr_schedule> make_schedule(const schedule_options& options, double base_lr,
                                           int64_t steps_per_epoch, int64_t epochs);

/// Names of the schedules, for help texts and errors.
const std::vector<std::string>& schedule_names();

} // namespace pnn::training
