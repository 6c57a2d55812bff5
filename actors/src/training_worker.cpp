#include <pnn/actors/training_worker.hpp>

#include <pnn/actors/bulk_wire.hpp>
#include <pnn/actors/compression.hpp>
#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/metrics.hpp>
#include <pnn/files.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/dataset.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/job.hpp>
#include <pnn/training/parameters.hpp>
#include <pnn/training/records.hpp>
#include <pnn/system.hpp>

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <filesystem>
#include <map>
#include <optional>

namespace pnn {

using namespace pnn::training;

namespace {

/// The worker's next slice of the job of that generation (sent to itself).
using slice_atom = caf::atom_constant<caf::atom("slice")>;

/// An answer from a bulk port is waiting (sent to itself; bulk_wire.hpp).
using answer_atom = caf::atom_constant<caf::atom("answer")>;

/// The worker as it sees itself: its public interface plus its own slices and
/// bulk port answers.
using worker_impl = worker_actor::extend<caf::reacts_to<slice_atom, uint64_t>,
                                         caf::reacts_to<answer_atom>>;

/// The first line of an exception's message (LibTorch appends a backtrace).
std::string first_line(const std::exception& e) {
  std::string msg = e.what();
  return msg.substr(0, msg.find('\n'));
}

/// One worker's job and what it does with it. Handlers of the behaviour call the
/// public member functions; everything else happens in the private ones, always in
/// the actor's own context (replies included), so no member needs a lock.
class worker_state {
public:
  static inline const char* name = "pnn.training_worker";
  using pointer = worker_impl::stateful_pointer<worker_state>;

  worker_state() = default;
  worker_state(const worker_state&) = delete;
  worker_state& operator=(const worker_state&) = delete;
  ~worker_state() {
    if (job_) // ended with its job (its node or its coordinator went)
      --metrics().workers_busy;
  }

  void init(pointer self, event_sink_actor sink, worker_options options) {
    self_ = self;
    sink_ = std::move(sink);
    options_ = std::move(options);
  }

  caf::result<job_result> start(const job_spec& spec, const job_checkpoint* resume,
                                const sgd_link* link);
  void slice(uint64_t generation);
  /// Runs the oldest bulk port answer waiting (answer_later).
  void take_answer();
  void set_threads(int32_t n);
  void cancel();
  void interrupt();
  void holder_down(const caf::down_msg& msg);

private:
  /// What the worker waits for. A job runs as a chain of slices, exactly one
  /// scheduled at a time while `training`; an SGD job also waits for its first pull
  /// (`first_pull`), for a free push slot (`push_wait`), for a pull after a push
  /// over max_staleness or after a synchronous round (`sync_wait`), for a
  /// synchronous round's answer (`push_wait`) and, after its last batch, for its
  /// last pushes' answers (`draining`).
  enum class mode { idle, training, first_pull, push_wait, sync_wait, draining };

  void open_result(const job_spec& spec);
  void check_limits(const job_checkpoint* resume);
  void prepare_folders(const job_checkpoint* resume);
  void build_job();
  void schedule_slice();
  void send_progress(bool epoch_ended, bool done);
  void send_checkpoint_home();
  void add_new_steps(job_checkpoint& c);
  void send_checkpoint(job_checkpoint c);
  void after_sgd_slice(bool done);
  void continue_training();
  void push();
  std::vector<char> take_update(std::vector<char>& squares, int32_t& steps, double& lr);
  void on_push_answered(const push_ack* ack, bool lost = false);
  void add_gradients(double lr);
  void set_up_shards();
  void on_push_shard_answered(int64_t index, const push_ack* ack, bool lost = false);
  bool recoverable(const caf::error& e) const;
  void shard_lost(size_t shard, const holder_actor& failed);
  void on_shard_moved(size_t shard, holder_actor next);
  void pull(bool first);
  void pull_part(size_t shard);
  void connect_bulk();
  void bulk_failed(size_t shard, const caf::error& why);
  /// A push's part sent on a bulk port, its answer still to be read.
  struct bulk_wait {
    std::shared_ptr<bulk_connection> port;
    caf::error sent; ///< the send failed so
    std::function<void(push_ack&)> on_ack;
    std::function<void(caf::error&)> on_error;
    size_t shard;
  };
  void take_bulk_acks(std::vector<bulk_wait>& waits, int64_t index);
  void answer_later(std::function<void()> answer);
  void on_pull_shard(size_t shard, param_blob& blob);
  void on_pulled();
  void complete(error_code code = error_code::none, std::string why = "");
  void pause();
  job_checkpoint checkpoint_for_home();
  void finish(error_code code, std::string why);
  std::string holder_failure(const char* what, const caf::error& e) const;
  std::chrono::milliseconds holder_timeout() const;
  /// Steps between pushes and between pulls around step `step` (from 0).
  bool every_step(int64_t step) const;
  int64_t n_push_at(int64_t step) const;
  int64_t n_pull_at(int64_t step) const;

  pointer self_ = nullptr;
  event_sink_actor sink_;
  /// A remote job's folder on its coordinator (spec_.out_dir names a scratch folder
  /// here once the job runs).
  std::string coordinator_dir_;
  worker_options options_;
  mode mode_ = mode::idle;
  uint64_t generation_ = 0; ///< of the running job: answers for an older one are dropped
  job_spec spec_;
  std::optional<sgd_link> link_;
  std::unique_ptr<training_job> job_;
  dataset_pair data_;
  caf::typed_response_promise<job_result> promise_;
  job_result result_;
  // A remote job's folder here (checkpoints, a checkpoint to resume from), and the
  // coordinator's folder its checkpoints go home to ("" : they stay here).
  std::unique_ptr<scratch_folder> scratch_;
  std::string home_dir_;
  std::optional<std::filesystem::path> resume_file_;
  double loss_sum_ = 0; ///< since the last progress event
  int64_t loss_count_ = 0;
  int64_t steps_sent_ = 0; ///< a remote job's steps the coordinator has (job_checkpoint)
  double last_progress_ = 0;
  // Distributed SGD (link_ set):
  uint64_t layout_ = 0;
  /// One holder, or each shard of a sharded one (sgd_link::shards): values
  /// [begin, end) of the parameters.
  struct holder_shard {
    holder_actor actor;
    uint64_t begin = 0;
    uint64_t end = 0;
    uint64_t layout = 0;  ///< what its slices carry
    uint64_t version = 0; ///< its version last pulled
    /// Pushes (by index, from 0) this shard refused that were sent after the pull
    /// of `version`: they are not in its version count.
    std::vector<int64_t> refused;
    std::vector<float> residual; ///< what compression left out of its pushes so far
    bool replacing = false;    ///< it failed; the directory was asked for its successor
    bool pull_missing = false; ///< the pull in flight still needs its part (from the successor)
    /// Its bulk port (sgd_link::bulk), when the worker could connect: pulls and
    /// pushes go there, blocking this worker up to holder_timeout, and their
    /// answers come to it as messages to itself (answer_later), as CAF's would.
    std::shared_ptr<bulk_connection> bulk;
    bool pull_sent = false; ///< its bulk port has the pull in flight
    caf::error bulk_sent;   ///< and its send failed so
  };
  static holder_shard shard_of(holder_actor actor, uint64_t begin, uint64_t end,
                               uint64_t layout);
  std::vector<holder_shard> shards_;
  std::deque<std::function<void()>> answers_; ///< bulk port answers not yet taken
  compression compression_; ///< of the pushes (sgd_link::encoding)
  bool repull_due_ = false; ///< a shard moved after answering the pull in flight
  int64_t pushes_sent_ = 0;     ///< pushes sent so far
  int64_t pushes_at_pull_ = 0;  ///< pushes_sent_ when the pull in flight was sent
  int64_t pushes_at_version_ = 0; ///< pushes_sent_ when the last pull was sent
  bool sync_due_ = false;       ///< a push was over max_staleness, or ended a round: pull before going on
  /// A push until every shard answered it: refused when one refused it, its
  /// staleness the largest.
  struct push_answers {
    size_t waiting = 0;
    bool refused = false;
    bool lost = false; ///< a shard was lost before it answered
    push_ack ack;
  };
  std::map<int64_t, push_answers> pushes_; ///< by push index
  param_blob pulled_;                      ///< the pull in flight, shard by shard
  std::vector<uint64_t> pulled_versions_;
  size_t pull_waiting_ = 0;                ///< shards that did not answer it yet
  std::vector<float> grad_sum_; ///< gradients since the last push (link_->gradients)
  std::vector<float> square_sum_; ///< and their squares (an Adam holder)
  int32_t grad_steps_ = 0;
  double lr_sum_ = 0;
  std::vector<char> snapshot_;  ///< parameters at the last pull or push
  std::vector<char> pull_base_; ///< the snapshot when the pull in flight was sent
  int64_t pushed_at_ = 0;       ///< steps_done at the last push (or pull)
  int32_t in_flight_ = 0;       ///< pushes not yet answered
  bool pull_pending_ = false;   ///< a pull is on its way
};

caf::result<job_result> worker_state::start(const job_spec& spec, const job_checkpoint* resume,
                                            const sgd_link* link) {
  if (mode_ != mode::idle) // refuse at once so the dispatcher can place the job elsewhere
    return failed_job(spec.id, error_code::worker_busy, "worker busy");
  if (link && !link->holder)
    return failed_job(spec.id, error_code::invalid_argument, "no parameter holder given");
  spec_ = spec;
  if (options_.limits.max_threads > 0) // a serve node's cap, whatever is asked
    spec_.threads = std::min(spec_.threads, options_.limits.max_threads);
  link_.reset();
  if (link) {
    link_ = *link;
    if (link_->sync) // every push ends a round, and the round's pull follows it
      link_->n_pull = link_->n_push;
  }
  open_result(spec_);
  promise_ = self_->make_response_promise<job_result>();
  auto promise = promise_;
  mode_ = mode::training;
  try {
    if (link_ && (link_->n_pull < 1 || link_->n_push < 1 || link_->max_pushes < 1))
      throw pnn::error(error_code::invalid_argument,
                       "job " + std::to_string(spec.id)
                         + ": n_pull, n_push and max_pushes must be at least 1");
    check_limits(resume);
    prepare_folders(resume);
    build_job();
  } catch (const pnn::error& e) {
    finish(e.code(), first_line(e));
    return promise;
  } catch (const std::exception& e) {
    finish(error_code::run_failed, first_line(e));
    return promise;
  }
  if (link_) {
    if (link_->sync)
      for (const auto& h : shards_)
        self_->monitor(h.actor);
    mode_ = mode::first_pull; // the first slice follows the holder's parameters
    pull(true);
  } else {
    schedule_slice();
  }
  return promise;
}

void worker_state::open_result(const job_spec& spec) {
  result_ = job_result{};
  result_.id = spec.id;
  result_.model = spec.model;
  result_.scheduler = spec.scheduler;
  result_.fold = spec.fold;
  result_.host = options_.host;
  result_.slot = options_.slot;
  result_.started_at = wall_clock_seconds();
  result_.thread_times.push_back(result_.started_at);
  result_.thread_counts.push_back(std::max(1, spec.threads));
  loss_sum_ = 0;
  loss_count_ = 0;
  last_progress_ = 0;
  in_flight_ = 0;
  pull_pending_ = false;
  pull_base_.clear();
  snapshot_.clear();
  pushed_at_ = 0;
  shards_.clear();
  answers_.clear();
  pushes_.clear();
  pulled_ = {};
  pulled_versions_.clear();
  pull_waiting_ = 0;
  repull_due_ = false;
  pushes_sent_ = pushes_at_pull_ = pushes_at_version_ = 0;
  sync_due_ = false;
  grad_sum_.clear();
  square_sum_.clear();
  grad_steps_ = 0;
  lr_sum_ = 0;
}

/// A serve node's limits (peer_limits; its thread cap applies in start): a
/// checkpoint or a data folder beyond them is refused with the flag that allows more.
void worker_state::check_limits(const job_checkpoint* resume) {
  const auto& l = options_.limits;
  const auto job = "job " + std::to_string(spec_.id) + ": ";
  const auto bytes = resume ? resume->bytes.size() + resume->steps.size() : 0;
  if (resume && l.max_checkpoint_bytes > 0 && static_cast<int64_t>(bytes) > l.max_checkpoint_bytes)
    throw pnn::error(error_code::invalid_argument,
                     job + "a checkpoint of " + std::to_string(bytes)
                       + " bytes is over this host's limit of "
                       + std::to_string(l.max_checkpoint_bytes)
                       + " (pnn-node serve --max-checkpoint-mb)");
  if (!l.restrict_data_dirs || !options_.data_dir.empty() || spec_.data_dir.empty())
    return;
  std::error_code ec;
  const auto dir = std::filesystem::weakly_canonical(spec_.data_dir, ec);
  for (const auto& allowed : l.data_dirs) {
    const auto root = std::filesystem::weakly_canonical(allowed, ec);
    auto [r, d] = std::mismatch(root.begin(), root.end(), dir.begin(), dir.end());
    if (!ec && !root.empty() && r == root.end())
      return;
  }
  throw pnn::error(error_code::invalid_argument,
                   job + "data folder " + spec_.data_dir
                     + " is not one this host serves (pnn-node serve --data-dir DIR, or "
                       "--allow-data-dir DIR)");
}

/// Where the job writes and what it resumes from. A remote worker writes nothing into
/// the coordinator's folder (not on this host): its records come back in the result,
/// its checkpoints (when asked for) go to a scratch folder and then home to the sink.
void worker_state::prepare_folders(const job_checkpoint* resume) {
  scratch_.reset();
  home_dir_.clear();
  resume_file_.reset();
  if (!options_.data_dir.empty())
    spec_.data_dir = options_.data_dir;
  coordinator_dir_ = options_.remote ? spec_.out_dir : "";
  const bool has_bytes = resume && !resume->bytes.empty();
  if (options_.remote) {
    const bool checkpoints = spec_.checkpoint_every > 0 && !spec_.out_dir.empty() && sink_;
    if (checkpoints || has_bytes)
      scratch_ = std::make_unique<scratch_folder>();
    home_dir_ = checkpoints ? spec_.out_dir : "";
    spec_.out_dir = checkpoints ? scratch_->path().string() : "";
    if (!checkpoints)
      spec_.checkpoint_every = 0;
  } else if (has_bytes) {
    scratch_ = std::make_unique<scratch_folder>();
  } else if (spec_.resume && !spec_.out_dir.empty()) {
    resume_file_ = find_latest_checkpoint(spec_.out_dir);
  }
  if (has_bytes) {
    try {
      scratch_->put_latest(resume->bytes);
      training::write_steps_file(scratch_->path() / training::steps_file_name, 0, resume->steps);
      resume_file_ = scratch_->path() / "latest.pt";
    } catch (const pnn::error& e) {
      // No scratch space: the job starts afresh (result.resumed_from_epoch says so).
      // Steps that are no steps fail the job: nothing a peer sent is replaced.
      if (e.code() != error_code::io_error)
        throw pnn::error(e.code(), "job " + std::to_string(spec_.id)
                                     + ": the checkpoint sent with it: " + e.what());
    }
  }
}

/// Loads the data, builds the job on its fold or shard and restores its checkpoint.
void worker_state::build_job() {
  if (options_.train_data)
    data_.train = options_.train_data;
  else
    data_ = shared_dataset(spec_.dataset, spec_.data_dir, spec_.subset);
  std::vector<int64_t> train, validation;
  const int64_t n = data_.train->size();
  if (spec_.shards > 0) {
    if (spec_.shard < 0 || spec_.shard >= spec_.shards)
      throw pnn::error(error_code::invalid_argument,
                       "job " + std::to_string(spec_.id) + ": shard " + std::to_string(spec_.shard)
                         + " outside 0.." + std::to_string(spec_.shards - 1));
    train = spec_.shards == 1 ? all_indices(n)
                              : shard_indices(n, spec_.shards, spec_.shard, spec_.split_seed);
  } else {
    auto fold = make_fold(n, spec_.folds, spec_.fold, spec_.split_seed);
    train = std::move(fold.train);
    validation = std::move(fold.validation);
  }
  auto o = job_options_from(spec_);
  if (options_.customize)
    options_.customize(spec_, o);
  if (!spec_.out_dir.empty())
    ensure_directory(spec_.out_dir);
  job_ = std::make_unique<training_job>(o, data_.train, std::move(train), std::move(validation));
  ++metrics().workers_busy; // until finish()
  if (resume_file_) {
    job_->load_checkpoint(*resume_file_);
    result_.resumed_from_epoch = job_->epochs_done();
    result_.resumed_from_step = job_->steps_done();
  }
  steps_sent_ = static_cast<int64_t>(job_->step_records().size());
  job_->on_step = [this](const step_record& s) {
    loss_sum_ += s.loss;
    ++loss_count_;
  };
  if (options_.prepare)
    options_.prepare(spec_, *job_);
  result_.clock_zero = wall_clock_seconds() - job_->elapsed_seconds();
  if (link_) {
    layout_ = layout_hash(*job_->model());
    set_up_shards();
    if (link_->gradients) {
      grad_sum_.assign(static_cast<size_t>(parameter_floats(*job_->model())), 0.0f);
      // An Adam holder taking k steps at once needs the gradients' spread too.
      if (job_->options().optimizer.name != "sgd")
        square_sum_.assign(grad_sum_.size(), 0.0f);
      job_->after_backward = [this](double lr) { add_gradients(lr); };
    }
  }
}

/// Adds this step's gradients (every parameter's, in parameter_bytes' order) to
/// those not pushed yet. A parameter without a gradient adds nothing.
void worker_state::add_gradients(double lr) {
  size_t at = 0;
  for (const auto& p : job_->model()->parameters()) {
    const auto n = static_cast<size_t>(p.numel());
    const auto& g = p.grad();
    if (g.defined()) {
      auto c = g.contiguous();
      const float* v = c.data_ptr<float>();
      float* sum = grad_sum_.data() + at;
      for (size_t i = 0; i < n; ++i)
        sum[i] += v[i];
      if (!square_sum_.empty()) {
        float* sq = square_sum_.data() + at;
        for (size_t i = 0; i < n; ++i)
          sq[i] += v[i] * v[i];
      }
    }
    at += n;
  }
  ++grad_steps_;
  lr_sum_ += lr;
}

/// Whether step `step` (from 0) is in the first `local_after` epochs, where the
/// worker pushes and pulls every step (post-local SGD).
bool worker_state::every_step(int64_t step) const {
  if (!(link_->local_after > 0))
    return false;
  // The first step past them, whole (0.07 x 100 batches is 7.000000000000001).
  const double until =
    std::ceil(link_->local_after * static_cast<double>(job_->batches_per_epoch()) - 1e-9);
  return static_cast<double>(step) < until;
}

int64_t worker_state::n_push_at(int64_t step) const {
  return every_step(step) ? 1 : link_->n_push;
}

int64_t worker_state::n_pull_at(int64_t step) const {
  return every_step(step) ? 1 : link_->n_pull;
}

void worker_state::schedule_slice() {
  self_->send(self_, slice_atom::value, generation_);
}

void worker_state::slice(uint64_t generation) {
  if (mode_ != mode::training || generation != generation_)
    return; // cancelled meanwhile, or a slice of an earlier job
  int64_t max_batches = options_.batches_per_slice;
  if (link_) {
    // Stop at the next pull or push step.
    const int64_t steps = job_->steps_done();
    const int64_t every_push = n_push_at(steps), every_pull = n_pull_at(steps);
    max_batches = std::min<int64_t>(max_batches, every_push - steps % every_push);
    max_batches = std::min<int64_t>(max_batches, every_pull - steps % every_pull);
  }
  const int64_t epochs_before = job_->epochs_done();
  const int64_t samples_before = job_->samples_done();
  bool done = false;
  try {
    done = job_->run(max_batches);
  } catch (const std::exception& e) {
    finish(error_code::run_failed, first_line(e));
    return;
  }
  metrics().samples_trained += static_cast<uint64_t>(job_->samples_done() - samples_before);
  const bool epoch_ended = job_->epochs_done() != epochs_before;
  if (epoch_ended && !home_dir_.empty() && job_->epochs_done() % spec_.checkpoint_every == 0) {
    send_checkpoint_home();
    if (!job_)
      return;
  }
  send_progress(epoch_ended, done);
  if (link_)
    after_sgd_slice(done);
  else if (done && job_->epochs_done() < spec_.epochs)
    pause();
  else if (done)
    complete();
  else
    schedule_slice();
}

/// The job where it is, as a checkpoint for its folder on the coordinator (saved
/// through the scratch folder), with the steps the coordinator does not have yet.
/// Throws what saving throws.
job_checkpoint worker_state::checkpoint_for_home() {
  if (!scratch_)
    scratch_ = std::make_unique<scratch_folder>();
  job_->save_checkpoint(scratch_->path() / "latest.pt");
  const auto text = read_text_file(scratch_->path() / "latest.pt");
  job_checkpoint c;
  c.id = spec_.id;
  c.out_dir = coordinator_dir_;
  c.epoch = job_->epochs_done();
  c.mid_epoch = job_->batch_in_epoch() > 0;
  c.bytes.assign(text.begin(), text.end());
  add_new_steps(c);
  return c;
}

/// The job reached its pause epoch (job_spec::pause_at): it saves where it is, so
/// that it can go on from there, and ends ok. A job of this host writes latest.pt
/// into its folder; one from another host's coordinator sends it home and answers
/// once the coordinator has it (the job may go on elsewhere from that file). With
/// nowhere to save it, it ends all the same: going on then starts it afresh.
void worker_state::pause() {
  try {
    if (options_.remote && !coordinator_dir_.empty() && sink_) {
      auto c = checkpoint_for_home();
      const auto generation = generation_;
      auto go_on = [this, generation] {
        if (generation == generation_)
          complete();
      };
      self_->request(sink_, caf::infinite, checkpoint_atom::value, std::move(c))
        .then(go_on, [go_on, this, generation](caf::error&) {
          if (generation == generation_)
            steps_sent_ = 0;
          go_on();
        });
      return;
    }
    if (!options_.remote && !spec_.out_dir.empty())
      job_->save_checkpoint(std::filesystem::path{spec_.out_dir} / "latest.pt");
  } catch (const std::exception& e) {
    finish(error_code::run_failed,
           "pausing after epoch " + std::to_string(job_->epochs_done())
             + ": saving the checkpoint failed: " + first_line(e));
    return;
  }
  complete();
}

/// The job wrote its checkpoint into the scratch folder: it goes to the sink, which
/// writes it into the coordinator's folder.
void worker_state::send_checkpoint_home() {
  job_checkpoint c;
  c.id = spec_.id;
  c.out_dir = home_dir_;
  c.epoch = job_->epochs_done();
  try {
    c.bytes = scratch_->take_checkpoint(c.epoch);
  } catch (const pnn::error& e) {
    finish(e.code(), e.what());
    return;
  }
  add_new_steps(c);
  send_checkpoint(std::move(c));
}

/// A checkpoint going home carries the steps the coordinator does not have yet
/// (those since the last one it got; its steps file holds the rest).
void worker_state::add_new_steps(job_checkpoint& c) {
  const auto& steps = job_->step_records();
  c.steps_from = steps_sent_;
  c.steps = training::encode_steps(steps, static_cast<size_t>(steps_sent_));
  steps_sent_ = static_cast<int64_t>(steps.size());
}

/// The sink answers each checkpoint: one it refused or could not store took its
/// steps with it, so the next one carries all of them (a later one in flight
/// meanwhile is refused too: its steps start past what the coordinator holds).
void worker_state::send_checkpoint(job_checkpoint c) {
  const auto generation = generation_;
  self_->request(sink_, caf::infinite, checkpoint_atom::value, std::move(c))
    .then([] {},
          [this, generation](caf::error&) {
            if (generation == generation_)
              steps_sent_ = 0;
          });
}

void worker_state::send_progress(bool epoch_ended, bool done) {
  const double elapsed = job_->elapsed_seconds();
  if (!sink_ || loss_count_ == 0
      || !(epoch_ended || done || elapsed - last_progress_ >= options_.progress_interval))
    return;
  job_progress p;
  p.id = spec_.id;
  p.slot = options_.slot;
  p.epoch = std::min(job_->epochs_done() + 1, spec_.epochs);
  p.epochs = spec_.epochs;
  p.batch = epoch_ended ? job_->batches_per_epoch() : job_->batch_in_epoch();
  p.batches = job_->batches_per_epoch();
  p.loss = loss_sum_ / static_cast<double>(loss_count_);
  p.lr = job_->schedule().lr();
  p.elapsed = elapsed;
  p.threads = job_->threads();
  self_->send(sink_, progress_atom::value, p);
  loss_sum_ = 0;
  loss_count_ = 0;
  last_progress_ = elapsed;
}

/// After a slice of an SGD job: push what was learnt (before a pull too: the holder
/// handles one sender's messages in order, so the pull's answer includes it), pull
/// when due, then the next slice, or wait for a push slot or the last answers.
void worker_state::after_sgd_slice(bool done) {
  const int64_t steps = job_->steps_done();
  // A synchronous worker pulls after each push's answer (continue_training).
  // (The periods of the step just taken: post-local SGD changes them once.)
  const bool pull_due = !done && !link_->sync && steps % n_pull_at(steps - 1) == 0;
  const int64_t pushes_before = pushes_sent_;
  if (done || pull_due || steps % n_push_at(steps - 1) == 0)
    push();
  if (!job_)
    return;
  if (link_->sync && pushes_sent_ != pushes_before && !done)
    sync_due_ = true; // the round's answer, then its parameters, before the next step
  if (done) {
    mode_ = mode::draining;
    if (in_flight_ == 0)
      complete();
    return;
  }
  if (pull_due)
    pull(false);
  continue_training();
}

/// Schedules the next slice, unless a push was over max_staleness (then it waits
/// for a pull first), a synchronous round is not answered yet (then it waits for
/// that, then for a pull) or max_pushes pushes are unanswered.
void worker_state::continue_training() {
  if (sync_due_ && link_->sync && in_flight_ > 0) {
    mode_ = mode::push_wait; // the pull must come after the round was applied
    return;
  }
  if (sync_due_) {
    if (!pull_pending_) {
      ++result_.sgd.sync_pulls;
      pull(false);
    }
    mode_ = mode::sync_wait;
    return;
  }
  if (in_flight_ >= std::max(1, link_->max_pushes)) {
    mode_ = mode::push_wait;
    return;
  }
  mode_ = mode::training;
  schedule_slice();
}

std::chrono::milliseconds worker_state::holder_timeout() const {
  const double seconds = std::max(0.001, link_->holder_timeout);
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

std::string worker_state::holder_failure(const char* what, const caf::error& e) const {
  if (e == caf::sec::request_timeout)
    return std::string("parameter holder did not answer a ") + what + " within "
      + std::to_string(link_->holder_timeout) + " s";
  return std::string("parameter holder: ") + what + " failed: " + self_->system().render(e);
}

/// A shard of values [begin, end) at `actor`, before its first pull.
worker_state::holder_shard worker_state::shard_of(holder_actor actor, uint64_t begin,
                                                  uint64_t end, uint64_t layout) {
  holder_shard h;
  h.actor = std::move(actor);
  h.begin = begin;
  h.end = end;
  h.layout = layout;
  return h;
}

/// The holder, or the shards of a sharded one, from the link. Throws pnn::error
/// when the shards' bounds do not cover the model's parameters.
void worker_state::set_up_shards() {
  const auto floats = static_cast<uint64_t>(parameter_floats(*job_->model()));
  shards_.clear();
  compression_ = {};
  if (link_->encoding > static_cast<uint8_t>(update_encoding::topk)
      || !(link_->topk_fraction > 0 && link_->topk_fraction <= 1))
    throw pnn::error(error_code::invalid_argument,
                     "job " + std::to_string(spec_.id) + ": update encoding "
                       + std::to_string(link_->encoding) + " with fraction "
                       + std::to_string(link_->topk_fraction)
                       + " (expected 0..3 and 0 < fraction <= 1)");
  compression_.encoding = static_cast<update_encoding>(link_->encoding);
  compression_.fraction = link_->topk_fraction;
  if (link_->shards.empty()) {
    shards_.push_back(shard_of(link_->holder, 0, floats, layout_));
    connect_bulk();
    return;
  }
  const auto& b = link_->bounds;
  bool fits = b.size() == link_->shards.size() + 1 && b.front() == 0 && b.back() == floats;
  for (size_t i = 0; fits && i + 1 < b.size(); ++i)
    fits = b[i] < b[i + 1] && link_->shards[i];
  if (!fits)
    throw pnn::error(error_code::invalid_argument,
                     "job " + std::to_string(spec_.id) + ": " + std::to_string(link_->shards.size())
                       + " holder shards whose bounds do not cover model " + spec_.model + "'s "
                       + std::to_string(floats) + " values");
  for (size_t i = 0; i < link_->shards.size(); ++i)
    shards_.push_back(
      shard_of(link_->shards[i], b[i], b[i + 1], shard_layout(layout_, b[i], b[i + 1])));
  connect_bulk();
}

/// Connects to the shards' bulk ports (sgd_link::bulk). One that cannot be reached
/// or serves another shape is said on stderr, and that shard is used through its
/// actor.
void worker_state::connect_bulk() {
  if (link_->sync)
    return; // rounds are answered late: only through the actor
  for (size_t s = 0; s < shards_.size() && s < link_->bulk.size(); ++s) {
    const auto& at = link_->bulk[s];
    auto& h = shards_[s];
    // A shard of this actor system: its actor is the shorter way. (A proxy of a
    // remote shard is of this system too, but not of this node; an actor of another
    // system in this process, as tests run them, is of this node.)
    if (at.port == 0
        || (h.actor->node() == self_->system().node()
            && &h.actor->home_system() == &self_->system()))
      continue;
    auto c = bulk_connection::open(at, std::min(10.0, link_->holder_timeout));
    std::string why;
    if (!c)
      why = self_->system().render(c.error());
    else if ((*c)->layout() != h.layout || (*c)->count() != h.end - h.begin)
      why = "it serves another shape";
    if (!why.empty()) {
      std::fprintf(stderr,
                   "pnn: job %u: parameter holder shard %zu: bulk port %s:%u not used (%s); "
                   "pulls and pushes go through CAF\n",
                   spec_.id, s, at.host.c_str(), static_cast<unsigned>(at.port), why.c_str());
      continue;
    }
    (*c)->set_timeout(link_->holder_timeout); // as an answer through CAF may take
    h.bulk = std::move(*c);
  }
}

/// `answer` runs as this worker's next message (after what runs now), as an
/// answer through CAF would.
void worker_state::answer_later(std::function<void()> answer) {
  answers_.push_back(std::move(answer));
  self_->send(self_, answer_atom::value);
}

void worker_state::take_answer() {
  if (answers_.empty())
    return;
  auto answer = std::move(answers_.front());
  answers_.pop_front();
  answer();
}

/// The update since the last push/pull, as float32 bytes: the gradients summed
/// since (the holder runs the optimizer; with their squares over several steps for
/// an Adam holder in `squares`, their steps and mean learning rate), or the current
/// parameters minus the snapshot. The current parameters become the snapshot.
std::vector<char> worker_state::take_update(std::vector<char>& squares, int32_t& steps,
                                            double& lr) {
  auto current = parameter_bytes(*job_->model());
  const uint64_t count = current.size() / sizeof(float);
  std::vector<char> bytes(count * sizeof(float));
  auto* values = reinterpret_cast<float*>(bytes.data());
  if (link_->gradients) {
    steps = std::max(1, grad_steps_);
    lr = grad_steps_ > 0 ? lr_sum_ / grad_steps_ : 0.0;
    std::memcpy(values, grad_sum_.data(), bytes.size());
    std::fill(grad_sum_.begin(), grad_sum_.end(), 0.0f);
    if (!square_sum_.empty()) {
      if (grad_steps_ > 1) { // one step's square is the holder's to take
        squares.resize(count * sizeof(float));
        std::memcpy(squares.data(), square_sum_.data(), squares.size());
      }
      std::fill(square_sum_.begin(), square_sum_.end(), 0.0f);
    }
    grad_steps_ = 0;
    lr_sum_ = 0;
  } else {
    const auto* now = reinterpret_cast<const float*>(current.data());
    const auto* before = reinterpret_cast<const float*>(snapshot_.data());
    for (uint64_t i = 0; i < count; ++i)
      values[i] = now[i] - before[i];
  }
  snapshot_ = std::move(current);
  pushed_at_ = job_->steps_done();
  return bytes;
}

/// Sends the update since the last push/pull (take_update), each shard its slice.
void worker_state::push() {
  if (job_->steps_done() == pushed_at_)
    return;
  std::vector<char> squares;
  int32_t steps = 1;
  double lr = 0;
  auto bytes = take_update(squares, steps, lr); // the whole update
  auto* values = reinterpret_cast<float*>(bytes.data());
  const int64_t index = pushes_sent_++;
  ++in_flight_;
  ++result_.sgd.pushes;
  pushes_[index].waiting = shards_.size();
  const auto gen = generation_;
  std::vector<bulk_wait> bulk_waits;
  for (size_t s = 0; s < shards_.size(); ++s) {
    auto& h = shards_[s];
    param_update update;
    // The shard's updates these parameters reflect: the last pull's, and this
    // worker's own pushes sent after that pull was that the shard took.
    update.seen = h.version + static_cast<uint64_t>(pushes_sent_ - 1 - pushes_at_version_)
      - static_cast<uint64_t>(h.refused.size());
    update.layout = h.layout;
    update.count = h.end - h.begin;
    update.gradient = link_->gradients;
    update.steps = steps;
    update.lr = lr;
    if (compression_.encoding != update_encoding::raw) {
      const auto* sq = squares.empty() ? nullptr
                                       : reinterpret_cast<const float*>(squares.data()) + h.begin;
      encode_update(compression_, values + h.begin, sq, h.end - h.begin, h.residual, update);
    } else if (shards_.size() == 1) {
      update.bytes = std::move(bytes);
      update.squares = std::move(squares);
    } else {
      const auto from = static_cast<std::ptrdiff_t>(h.begin * sizeof(float));
      const auto to = static_cast<std::ptrdiff_t>(h.end * sizeof(float));
      update.bytes.assign(bytes.begin() + from, bytes.begin() + to);
      if (!squares.empty())
        update.squares.assign(squares.begin() + from, squares.begin() + to);
    }
    result_.sgd.pushed_bytes += static_cast<int64_t>(update.bytes.size() + update.squares.size()
                                                     + update.indices.size());
    auto on_ack = [this, gen, index](push_ack& ack) {
      if (gen == generation_)
        on_push_shard_answered(index, &ack);
    };
    auto on_error = [this, gen, index, s, to = h.actor](caf::error& e) {
      if (gen != generation_)
        return;
      if (e.category() != error_category) {
        if (!recoverable(e)) {
          // No answer in time, or the holder is gone: this worker cannot go on.
          finish(error_code::holder_failed, holder_failure("push", e));
          return;
        }
        // The shard's host was lost (or it did not answer): its successor comes
        // from the directory (unless it came already: `to` is an old handle);
        // this push's part there is lost, and like a refused one not in its count.
        if (index >= pushes_at_version_)
          shards_[s].refused.push_back(index);
        if (to == shards_[s].actor)
          shard_lost(s, to);
        on_push_shard_answered(index, nullptr, true);
        return;
      }
      // The shard refused this update (it counts it too); the next pull brings
      // this worker back to its parameters. Until then, its own pushes since the
      // last pull count one fewer there.
      if (index >= pushes_at_version_)
        shards_[s].refused.push_back(index);
      on_push_shard_answered(index, nullptr);
    };
    if (h.bulk) { // answered below, once every shard has its part
      ++result_.sgd.bulk_requests;
      auto err = h.bulk->send_push(update);
      bulk_waits.push_back({h.bulk, std::move(err), std::move(on_ack), std::move(on_error), s});
      continue;
    }
    // A synchronous round is answered when every worker has pushed, which takes
    // as long as the slowest worker's steps: no timeout, but the holder is
    // monitored (holder_down), and a lost worker leaves the rounds.
    if (link_->sync)
      self_->request(h.actor, caf::infinite, push_atom::value, std::move(update))
        .then(std::move(on_ack), std::move(on_error));
    else
      self_->request(h.actor, holder_timeout(), push_atom::value, std::move(update))
        .then(std::move(on_ack), std::move(on_error));
  }
  take_bulk_acks(bulk_waits, index);
}

/// The answers of push `index` from the shards it went to on bulk ports, in turn,
/// each as a message to itself (answer_later).
void worker_state::take_bulk_acks(std::vector<bulk_wait>& waits, int64_t index) {
  const auto gen = generation_;
  for (auto& w : waits) {
    caf::expected<push_ack> answer = w.sent ? caf::expected<push_ack>{std::move(w.sent)}
                                            : w.port->receive_push();
    if (!answer && answer.error().category() != error_category) {
      // The port failed: whether the shard applied this push is unknown, so it
      // counts as lost (never sent twice); later requests go through the actor.
      bulk_failed(w.shard, answer.error());
      answer_later([this, gen, index, s = w.shard] {
        if (gen != generation_)
          return;
        if (index >= pushes_at_version_)
          shards_[s].refused.push_back(index);
        on_push_shard_answered(index, nullptr, true);
      });
      continue;
    }
    answer_later([w = std::move(w), answer = std::move(answer)]() mutable {
      if (answer)
        w.on_ack(*answer);
      else
        w.on_error(answer.error()); // the shard refused it
    });
  }
}

/// Shard `s`'s bulk port failed (`why`): said once, and its requests go through
/// its actor from now on.
void worker_state::bulk_failed(size_t s, const caf::error& why) {
  auto& h = shards_[s];
  if (!h.bulk)
    return;
  std::fprintf(stderr,
               "pnn: job %u: parameter holder shard %zu: bulk port failed (%s); pulls and "
               "pushes go through CAF\n",
               spec_.id, s, self_->system().render(why).c_str());
  h.bulk.reset();
  h.bulk_sent = {};
  h.pull_sent = false;
}

/// The holder of a synchronous job (or one of its shards) went (its host was lost,
/// or it quit): no round will be answered, so the job fails now rather than waiting.
void worker_state::holder_down(const caf::down_msg& msg) {
  if (mode_ == mode::idle || !link_ || !link_->sync)
    return;
  for (const auto& h : shards_)
    if (msg.source == h.actor.address()) {
      finish(error_code::holder_failed,
             "parameter holder: gone (" + self_->system().render(msg.reason) + ")");
      return;
    }
}

/// A shard answered push `index` (`ack` null: it refused it, or with `lost` it was
/// lost before it answered).
void worker_state::on_push_shard_answered(int64_t index, const push_ack* ack, bool lost) {
  auto it = pushes_.find(index);
  if (it == pushes_.end())
    return;
  auto& p = it->second;
  if (lost) {
    p.lost = true;
  } else if (!ack) {
    p.refused = true;
  } else {
    p.ack.version = std::max(p.ack.version, ack->version);
    p.ack.staleness = std::max(p.ack.staleness, ack->staleness);
  }
  if (--p.waiting > 0)
    return;
  const auto answer = p;
  pushes_.erase(it);
  const bool whole = !answer.refused && !answer.lost;
  on_push_answered(whole ? &answer.ack : nullptr, answer.lost && !answer.refused);
}

/// `ack` is null for a refused push (or with `lost`, one a lost shard never answered).
void worker_state::on_push_answered(const push_ack* ack, bool lost) {
  --in_flight_;
  if (lost) {
    ++result_.sgd.lost_pushes;
  } else if (!ack) {
    ++result_.sgd.rejected_pushes;
  } else {
    ++result_.sgd.accepted_pushes;
    result_.sgd.staleness_sum += ack->staleness;
    result_.sgd.staleness_max = std::max(result_.sgd.staleness_max, ack->staleness);
    if (link_->max_staleness > 0 && ack->staleness > static_cast<uint64_t>(link_->max_staleness)
        && mode_ != mode::draining)
      sync_due_ = true; // the next step waits for a pull (continue_training)
  }
  if (mode_ == mode::draining && in_flight_ == 0)
    complete();
  else if (mode_ == mode::push_wait)
    continue_training();
}

/// Fetches the holder's parameters (every shard's at once). The first pull replaces
/// the model's parameters and the first slice follows the answer. Later pulls do
/// not stop training: the answer is merged when it arrives (between slices),
/// keeping the steps made meanwhile.
void worker_state::pull(bool first) {
  if (pull_pending_)
    return; // one pull at a time; the next pull step asks again
  pull_pending_ = true;
  pushes_at_pull_ = pushes_sent_;
  pull_base_ = first ? std::vector<char>{} : snapshot_;
  pulled_ = {};
  pulled_.layout = layout_;
  pulled_.count = shards_.empty() ? 0 : shards_.back().end;
  pulled_.bytes.assign(pulled_.count * sizeof(float), 0);
  pulled_versions_.assign(shards_.size(), 0);
  pull_waiting_ = shards_.size();
  // Every bulk port has its request before the first answer is read.
  for (auto& h : shards_)
    if (h.bulk && !h.replacing) {
      h.bulk_sent = h.bulk->send_pull();
      h.pull_sent = true;
    }
  for (size_t s = 0; s < shards_.size(); ++s) {
    shards_[s].pull_missing = true;
    if (!shards_[s].replacing) // else its successor is asked once it is known
      pull_part(s);
  }
}

/// Asks shard `s` for its part of the pull in flight. An answer from a handle the
/// shard no longer has (it moved meanwhile) is dropped: its successor answers.
void worker_state::pull_part(size_t s) {
  const auto gen = generation_;
  const auto to = shards_[s].actor;
  auto on_blob = [this, gen, s, to](param_blob& blob) {
    if (gen == generation_ && to == shards_[s].actor)
      on_pull_shard(s, blob);
  };
  auto on_error = [this, gen, s, to](caf::error& e) {
    if (gen != generation_ || to != shards_[s].actor)
      return;
    if (!recoverable(e)) {
      finish(error_code::holder_failed, holder_failure("pull", e));
      return;
    }
    shard_lost(s, to); // its successor answers this part (on_shard_moved)
  };
  if (auto& h = shards_[s]; h.bulk) {
    ++result_.sgd.bulk_requests;
    param_blob blob;
    auto err = h.pull_sent ? std::move(h.bulk_sent) : h.bulk->send_pull();
    if (!err)
      err = h.bulk->receive_pull(blob);
    h.bulk_sent = {};
    h.pull_sent = false;
    if (err) {
      // The port failed, not (yet) the shard: the actor is asked (its failure,
      // if the host is gone, is the lost shard).
      bulk_failed(s, err);
      --result_.sgd.bulk_requests;
    } else {
      answer_later([on_blob, blob = std::move(blob)]() mutable { on_blob(blob); });
      return;
    }
  }
  self_->request(to, holder_timeout(), pull_atom::value).then(std::move(on_blob), std::move(on_error));
}

/// Whether a failed request to a shard is worth asking the directory about: a
/// lost host or no answer in time, in an asynchronous run that has a directory.
bool worker_state::recoverable(const caf::error& e) const {
  return link_ && link_->directory && !link_->sync && e.category() != error_category;
}

/// Shard `s` (handle `failed`) failed a request: asks the directory for its
/// successor (once).
void worker_state::shard_lost(size_t s, const holder_actor& failed) {
  auto& h = shards_[s];
  if (h.replacing || failed != h.actor)
    return;
  h.replacing = true;
  const auto gen = generation_;
  // The coordinator notices a lost host after its peer timeout, then restores the
  // shard: wait for that longer than for one answer.
  const auto wait = std::chrono::milliseconds(
    static_cast<int64_t>(std::max(60.0, 4 * link_->holder_timeout) * 1000));
  self_->request(link_->directory, wait, pull_atom::value, static_cast<uint32_t>(s), failed)
    .then(
      [this, gen, s](holder_actor& next) {
        if (gen == generation_)
          on_shard_moved(s, std::move(next));
      },
      [this, gen, s](caf::error& e) {
        if (gen == generation_)
          finish(error_code::holder_failed,
                 "parameter holder shard " + std::to_string(s)
                   + " failed and no successor came: " + self_->system().render(e));
      });
}

/// Shard `s` has a successor (restored from its last checkpoint): the pull in
/// flight takes its part from there, and the worker pulls every shard again once
/// that pull is in, so its parameters follow the shard's rollback.
void worker_state::on_shard_moved(size_t s, holder_actor next) {
  auto& h = shards_[s];
  h.replacing = false;
  h.bulk.reset(); // the successor runs on the coordinator: through its actor
  h.bulk_sent = {};
  h.pull_sent = false;
  if (!next || next == h.actor) {
    finish(error_code::holder_failed,
           "parameter holder shard " + std::to_string(s) + " failed and has no successor");
    return;
  }
  h.actor = std::move(next);
  ++result_.sgd.shard_moves;
  if (pull_pending_) {
    if (h.pull_missing)
      pull_part(s);
    repull_due_ = true; // then every shard again, from one point (versions, base)
  } else {
    pull(false);
  }
}

/// One shard's part of the pull in flight; the last one completes it.
void worker_state::on_pull_shard(size_t shard, param_blob& blob) {
  if (!pull_pending_ || !shards_[shard].pull_missing)
    return; // not awaited (a second answer for this part)
  const auto& h = shards_[shard];
  const uint64_t floats = h.end - h.begin;
  const auto holder =
    "parameter holder" + (shards_.size() > 1 ? " shard " + std::to_string(shard) : std::string());
  if (blob.layout != h.layout || blob.count != floats) {
    finish(error_code::holder_failed,
           holder + ": its parameters (layout " + std::to_string(blob.layout) + ", "
             + std::to_string(blob.count) + " values) do not fit model " + spec_.model
             + " (layout " + std::to_string(h.layout) + ", " + std::to_string(floats)
             + " values)");
    return;
  }
  auto why = check_floats(blob.bytes, blob.count); // the byte count too
  if (!why.empty()) {
    finish(error_code::holder_failed, holder + ": pulled parameters: " + why);
    return;
  }
  std::memcpy(pulled_.bytes.data() + h.begin * sizeof(float), blob.bytes.data(),
              blob.bytes.size());
  pulled_versions_[shard] = blob.version;
  shards_[shard].pull_missing = false;
  if (--pull_waiting_ == 0)
    on_pulled();
}

/// With `pull_base_` the snapshot when the pull was sent (just after a push, so the
/// holder's answer includes everything pushed up to then), both the parameters and
/// the snapshot move by (pulled - base): the local progress since the request
/// stays, and the next push still sends exactly what was not pushed yet.
void worker_state::on_pulled() {
  pull_pending_ = false;
  auto& model = *job_->model();
  auto blob = std::move(pulled_); // every shard's values checked (on_pull_shard)
  pulled_ = {};
  const bool first = mode_ == mode::first_pull;
  try {
    if (first) {
      load_parameter_bytes(model, blob.bytes);
      snapshot_ = std::move(blob.bytes);
      pushed_at_ = job_->steps_done();
    } else {
      auto current = parameter_bytes(model);
      auto* cur = reinterpret_cast<float*>(current.data());
      auto* snap = reinterpret_cast<float*>(snapshot_.data());
      const auto* pulled = reinterpret_cast<const float*>(blob.bytes.data());
      const auto* base = reinterpret_cast<const float*>(pull_base_.data());
      for (uint64_t i = 0; i < blob.count; ++i) {
        const float offset = pulled[i] - base[i];
        cur[i] += offset;
        snap[i] += offset;
      }
      load_parameter_bytes(model, current);
      pull_base_.clear();
    }
  } catch (const std::exception& e) {
    finish(error_code::run_failed, first_line(e));
    return;
  }
  pushes_at_version_ = pushes_at_pull_;
  for (size_t s = 0; s < shards_.size(); ++s) {
    auto& h = shards_[s];
    h.version = pulled_versions_[s];
    // Refusals of pushes sent before this pull are in its version already.
    h.refused.erase(std::remove_if(h.refused.begin(), h.refused.end(),
                                   [this](int64_t i) { return i < pushes_at_version_; }),
                    h.refused.end());
  }
  ++result_.sgd.pulls;
  if (repull_due_) { // a shard moved while this pull was under way
    repull_due_ = false;
    pull(false);
  }
  if (sync_due_) {
    sync_due_ = false;
    if (mode_ == mode::sync_wait)
      continue_training();
  } else if (first) {
    continue_training();
  }
}

void worker_state::set_threads(int32_t n) {
  if (options_.limits.max_threads > 0)
    n = std::min(n, options_.limits.max_threads);
  if (!job_ || n < 1 || n == job_->threads())
    return;
  job_->set_threads(n);
  result_.thread_times.push_back(wall_clock_seconds());
  result_.thread_counts.push_back(n);
}

void worker_state::cancel() {
  if (mode_ != mode::idle)
    finish(error_code::cancelled, "cancelled");
}

/// The run was interrupted: the job saves where it is, between two slices, and
/// ends. A job of this host writes latest.pt into its folder; one from another
/// host's coordinator sends it home (mid_epoch, so it replaces latest.pt only).
/// An SGD share ends with its records so far: the holder has the parameters.
void worker_state::interrupt() {
  if (mode_ == mode::idle)
    return;
  if (!job_) {
    finish(error_code::interrupted, "interrupted");
    return;
  }
  if (link_) { // the holder has what it pushed; its records so far go out as usual
    complete(error_code::interrupted,
             "interrupted in epoch " + std::to_string(job_->epochs_done() + 1) + " after batch "
               + std::to_string(job_->batch_in_epoch()));
    return;
  }
  const auto where = "interrupted in epoch " + std::to_string(job_->epochs_done() + 1)
    + " after batch " + std::to_string(job_->batch_in_epoch());
  try {
    if (options_.remote && !coordinator_dir_.empty() && sink_) {
      send_checkpoint(checkpoint_for_home());
    } else if (!options_.remote && !spec_.out_dir.empty()) {
      job_->save_checkpoint(std::filesystem::path{spec_.out_dir} / "latest.pt");
    } else {
      finish(error_code::interrupted, where + " (no folder to save it in)");
      return;
    }
  } catch (const std::exception& e) {
    finish(error_code::interrupted, where + "; saving it failed: " + first_line(e));
    return;
  }
  finish(error_code::interrupted, where + " (saved)");
}

/// The job trained its last batch: its records go out (or into the result) and the
/// promise is delivered.
void worker_state::complete(error_code code, std::string why) {
  try {
    const auto& val = job_->last_validation();
    if (options_.remote) {
      for (auto& [name, content] :
           job_record_files(*job_, val ? &*val : nullptr, "validation", data_.train->classes)) {
        result_.files.names.push_back(name);
        result_.files.contents.push_back(std::move(content));
      }
    } else if (!spec_.out_dir.empty()) {
      write_job_records(spec_.out_dir, *job_, val ? &*val : nullptr, "validation",
                        data_.train->classes);
    }
  } catch (const pnn::error& e) {
    finish(e.code(), e.what());
    return;
  } catch (const std::exception& e) {
    finish(error_code::run_failed, e.what());
    return;
  }
  finish(code, std::move(why));
}

/// Ends the job (finished, failed or cancelled): the result goes to the requester and
/// the worker is idle again.
void worker_state::finish(error_code code, std::string why) {
  auto& r = result_;
  r.code = code;
  r.error = std::move(why);
  r.finished_at = wall_clock_seconds();
  if (job_) {
    r.epochs_done = job_->epochs_done();
    r.samples = job_->samples_done();
    for (const auto& e : job_->epoch_records()) {
      r.epoch_train_loss.push_back(e.train_loss);
      r.epoch_val_loss.push_back(e.val_loss);
      r.epoch_val_accuracy.push_back(e.val_accuracy);
    }
    if (!job_->epoch_records().empty()) {
      const auto& last = job_->epoch_records().back();
      r.train_loss = last.train_loss;
      r.val_loss = last.val_loss;
      r.val_accuracy = last.val_accuracy;
    }
  }
  if (promise_.pending())
    promise_.deliver(r);
  if (job_)
    --metrics().workers_busy;
  ++(r.ok() ? metrics().worker_jobs_ok : metrics().worker_jobs_failed);
  scratch_.reset();
  job_.reset();
  data_ = {};
  link_.reset();
  snapshot_ = {};
  mode_ = mode::idle;
  ++generation_;
}

worker_impl::behavior_type training_worker(worker_state::pointer self, event_sink_actor sink,
                                           worker_options options) {
  self->state.init(self, std::move(sink), std::move(options));
  // A synchronous SGD job monitors its holder (its pushes wait without a timeout).
  self->set_down_handler([self](caf::down_msg& msg) { self->state.holder_down(msg); });
  return {
    [self](run_atom, const job_spec& spec) -> caf::result<job_result> {
      return self->state.start(spec, nullptr, nullptr);
    },
    [self](run_atom, const job_spec& spec, const job_checkpoint& resume)
      -> caf::result<job_result> { return self->state.start(spec, &resume, nullptr); },
    [self](run_atom, const job_spec& spec, const sgd_link& link) -> caf::result<job_result> {
      return self->state.start(spec, nullptr, &link);
    },
    [self](slice_atom, uint64_t generation) { self->state.slice(generation); },
    [self](answer_atom) { self->state.take_answer(); },
    [self](threads_atom, int32_t n) { self->state.set_threads(n); },
    [self](cancel_atom) { self->state.cancel(); },
    [self](interrupt_atom) { self->state.interrupt(); },
  };
}

} // namespace

job_options job_options_from(const job_spec& s) {
  job_options o;
  o.model = s.model;
  o.optimizer = optimizer_options::parse(s.optimizer, s.lr);
  o.schedule = schedule_options::parse(s.scheduler);
  o.epochs = s.epochs;
  o.batch_size = s.batch_size;
  o.seed = s.seed;
  o.threads = std::max(1, s.threads);
  o.checkpoint_every = s.checkpoint_every;
  o.validate_every = s.validate_every;
  o.pause_at = s.pause_at;
  o.checkpoint_dir = s.out_dir;
  o.settings = job_settings(s);
  o.train_transform = default_transform(s.dataset, true);
  o.eval_transform = default_transform(s.dataset, false);
  return o;
}

worker_actor spawn_worker(caf::actor_system& sys, event_sink_actor sink, worker_options options) {
  return sys.spawn(training_worker, std::move(sink), std::move(options));
}

} // namespace pnn
