#pragma once

// Model selection that stops losers early: asynchronous successive halving (ASHA,
// Li et al. 2020) over a K-fold grid, comparing configurations by their mean
// validation accuracy over their folds. The fold dispatcher pauses each job at the
// rungs (pruning_policy); this policy decides which configurations go on, writes
// every rung result and decision to a journal, and replays it on --resume so that a
// run that crashed goes on with the decisions it had made.

#include <pnn/actors/fold_dispatcher.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace pnn {

/// The configuration of K-fold job `id`: jobs are `folds` per configuration, in
/// grid order (expand_jobs).
inline uint32_t config_of_job(uint32_t id, int32_t folds) {
  return id / static_cast<uint32_t>(folds > 0 ? folds : 1);
}

/// kfold --prune: "none", or "halving[:eta=3,min_epochs=1]".
struct prune_options {
  std::string rule = "none"; ///< none or halving
  int64_t eta = 3;           ///< the top 1/eta of a rung go on (2 or more)
  int64_t min_epochs = 1;    ///< the first rung
  /// Throws pnn::error naming --prune for a bad spec.
  static prune_options parse(const std::string& spec);
  bool enabled() const {
    return rule != "none";
  }
  /// The rungs of jobs of `epochs` epochs: min_epochs x eta^k below `epochs`.
  std::vector<int64_t> rungs(int64_t epochs) const;
  /// The spec it was parsed from, in full ("halving:eta=3,min_epochs=1").
  std::string spec() const;
};

/// What a pruning rule sees at one rung when it decides.
struct rung_view {
  size_t index = 0;   ///< 0: the first rung
  int64_t epoch = 0;  ///< epochs trained at this rung
  int64_t eta = 3;
  size_t configs = 0; ///< configurations in the grid
  struct entry {
    uint32_t config = 0;
    double mean = 0;       ///< validation accuracy at this rung, mean over the folds
    bool promoted = false; ///< already goes on
  };
  /// The configurations that completed this rung so far (every fold), best first
  /// (ties: the lower configuration first).
  std::vector<entry> completed;
  /// Nothing runs or waits any more: the rule's last word on this rung. (If no
  /// configuration trained to the end, the best of the highest rung then still
  /// does; the rest stop.)
  bool last_call = false;
};

/// A pruning rule: the configurations of `view.completed` (not promoted yet) that go
/// on to the next rung now. Called each time a configuration completes a rung, and
/// once more per rung (last_call) when nothing else runs; never with an empty
/// `completed`. A promotion is final.
using prune_rule = std::function<std::vector<uint32_t>(const rung_view& view)>;

/// ASHA's rule: of the n configurations that completed a rung, the best
/// floor(n / eta) go on, as soon as they are among them.
std::vector<uint32_t> asha_rule(const rung_view& view);

/// One line of a pruning journal.
struct prune_event {
  std::string kind;    ///< start, rung, promote or stop
  uint32_t config = 0; ///< rung, promote, stop
  int64_t epoch = 0;   ///< the rung's epoch (promote: the rung it leaves)
  double mean = std::numeric_limits<double>::quiet_NaN(); ///< rung, stop
  std::vector<double> folds; ///< rung: each fold's accuracy
  std::string settings;      ///< start: what the journal was made with
};

/// Reads a journal (one JSON object per line). A last line cut short by a crash
/// is skipped; other damage throws pnn::error(malformed_file) naming the file.
std::vector<prune_event> read_prune_journal(const std::filesystem::path& file);

/// ASHA over configurations of `folds` jobs each (job id = config x folds + fold).
class successive_halving : public pruning_policy {
public:
  struct setup {
    size_t configs = 0;
    int32_t folds = 2;
    int64_t epochs = 1;
    prune_options options;
    prune_rule rule;                  ///< empty: asha_rule
    std::vector<std::string> names;   ///< configuration names for the journal (may be empty)
    std::filesystem::path journal;    ///< appended with every event (empty: none)
    std::vector<prune_event> replay;  ///< an earlier run's journal, honoured first
  };

  /// Throws pnn::error when `replay` was made with other settings (naming what
  /// differs) or contradicts itself.
  explicit successive_halving(setup s);

  int64_t pause_at(const job_spec& job, int64_t done) override;
  pruning_decisions paused(const job_spec& job, const job_result& r) override;
  pruning_decisions stalled(const std::vector<uint32_t>& paused) override;

  /// Where a configuration stands.
  struct config_state {
    size_t level = 0;            ///< rungs passed (promotions)
    bool stopped = false;        ///< pruned (at rungs()[level])
    std::map<size_t, double> means; ///< per completed rung
    std::map<size_t, std::map<int32_t, double>> folds; ///< per rung, per fold
    std::set<uint32_t> parked;   ///< its jobs waiting at a pause
  };
  const std::vector<int64_t>& rungs() const {
    return rungs_;
  }
  const std::vector<config_state>& configs() const {
    return configs_;
  }
  /// Every event so far, replayed ones first.
  const std::vector<prune_event>& events() const {
    return events_;
  }
  /// The settings line a journal of this setup starts with.
  std::string settings() const;

private:
  void log(prune_event e);
  void apply_replay(const std::vector<prune_event>& events);
  pruning_decisions evaluate(size_t rung, bool last_call);
  void promote(uint32_t config, pruning_decisions& d);
  void stop(uint32_t config, pruning_decisions& d);

  setup s_;
  std::vector<int64_t> rungs_;
  std::vector<config_state> configs_;
  std::vector<std::map<uint32_t, double>> completed_; ///< per rung: config -> mean
  std::vector<prune_event> events_;
  bool broken_ = false; ///< an append to the journal failed
};

} // namespace pnn
