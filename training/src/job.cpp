#include <pnn/training/job.hpp>

#include <pnn/error.hpp>
#include <pnn/models/registry.hpp>
#include <pnn/training/hogwild.hpp>
#include <pnn/training/random.hpp>

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <sstream>

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace pnn::training {

criterion_fn cross_entropy() {
  return [](const torch::Tensor& logits, const torch::Tensor& labels) {
    return torch::nn::functional::cross_entropy(logits, labels);
  };
}

void use_intra_op_threads(int threads) {
  if (threads < 1)
    threads = 1;
  if (at::get_num_threads() != threads)
    at::set_num_threads(threads);
}

std::shared_ptr<models::Network> make_seeded_model(const std::string& name, int64_t in_channels,
                                                   int64_t num_classes, uint64_t seed) {
  // LibTorch initialises weights from its global generator; hold it while building
  // so that jobs constructed on other threads do not interleave their draws.
  static std::mutex init_mutex;
  std::lock_guard<std::mutex> guard{init_mutex};
  torch::manual_seed(derive_seed(seed, 0xA11CE));
  return models::make_model(name, in_channels, num_classes);
}

std::vector<std::pair<std::string, std::string>>
job_record_files(const training_job& job, const evaluation* eval, const std::string& eval_name,
                 const std::vector<std::string>& classes) {
  std::vector<std::pair<std::string, std::string>> files;
  files.emplace_back("steps.csv", steps_csv(job.step_records()));
  files.emplace_back("epochs.csv", epochs_csv(job.epoch_records()));
  nlohmann::json epochs = nlohmann::json::array();
  for (const auto& e : job.epoch_records())
    epochs.push_back(to_json(e));
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : job.step_records())
    steps.push_back(to_json(s));
  nlohmann::json metrics{{"epochs", epochs}, {"steps", steps}};
  if (eval != nullptr) {
    files.emplace_back("confusion.csv", confusion_csv(eval->confusion, classes));
    metrics[eval_name] = to_json(*eval, classes);
  }
  files.emplace_back("metrics.json", metrics.dump() + "\n");
  return files;
}

void write_job_records(const fs::path& dir, const training_job& job, const evaluation* eval,
                       const std::string& eval_name, const std::vector<std::string>& classes) {
  for (const auto& [name, content] : job_record_files(job, eval, eval_name, classes))
    write_file_atomic(dir / name, content);
}

std::optional<fs::path> find_latest_checkpoint(const fs::path& dir) {
  std::error_code ec;
  auto p = dir / "latest.pt";
  if (fs::exists(p, ec))
    return p;
  return std::nullopt;
}

double probe_step_seconds(const std::string& model, int64_t channels, int64_t size,
                          int64_t num_classes, int64_t batch_size, int steps) {
  auto net = make_seeded_model(model, channels, num_classes, 1);
  net->train();
  torch::optim::Adam opt{net->parameters(), torch::optim::AdamOptions(1e-3)};
  auto x = torch::randn({batch_size, channels, size, size});
  auto y = torch::randint(0, num_classes, {batch_size}, torch::kInt64);
  std::vector<double> times;
  for (int i = 0; i <= std::max(1, steps); ++i) {
    auto t = clock_type::now();
    opt.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(x), y).backward();
    opt.step();
    if (i > 0) // the first step warms up allocations
      times.push_back(std::chrono::duration<double>(clock_type::now() - t).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct training_job::impl {
  job_options o;
  dataset_ptr data;
  std::vector<int64_t> train;
  std::vector<int64_t> validation;
  std::shared_ptr<models::Network> model;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<lr_schedule> schedule;
  criterion_fn criterion;

  // Position.
  int64_t epoch = 0;                 // completed epochs
  int64_t batch = 0;                 // batches done in the current epoch
  int64_t steps = 0;                 // optimizer steps overall
  int64_t samples = 0;               // samples trained overall
  std::vector<int64_t> shared_batch; // the batch taken from a shared queue
  std::vector<int64_t> order;        // this epoch's sample order
  rng aug{0};                        // augmentation generator, re-seeded per epoch
  double loss_sum = 0;               // current epoch, summed over samples
  int64_t correct = 0;
  int64_t seen = 0;
  double elapsed_before = 0; // seconds of training before the last resume
  clock_type::time_point started = clock_type::now();
  clock_type::time_point epoch_started = clock_type::now();
  double epoch_started_at = 0; // seconds since start when the epoch began

  std::vector<step_record> steps_log;
  std::vector<epoch_record> epochs_log;
  // The steps file the last checkpoint was saved with (or loaded from), and how many
  // of steps_log it holds: the next save there appends only the rest.
  mutable fs::path steps_file;
  mutable int64_t steps_in_file = 0;
  std::optional<evaluation> last_val;

  double now() const {
    return elapsed_before + std::chrono::duration<double>(clock_type::now() - started).count();
  }

  int64_t batches_per_epoch() const {
    if (o.shared_batches) {
      const int64_t c = o.shared_batches->consumers();
      return std::max<int64_t>(1, (o.shared_batches->batches_per_epoch() + c - 1) / c);
    }
    auto n = static_cast<int64_t>(train.size());
    return (n + o.batch_size - 1) / o.batch_size;
  }

  void begin_epoch() {
    if (!o.shared_batches) {
      order = train;
      rng gen{derive_seed(o.seed, 1000 + static_cast<uint64_t>(epoch))};
      shuffle(order, gen);
    }
    aug.seed(derive_seed(o.seed, 2000000 + static_cast<uint64_t>(epoch)));
    loss_sum = 0;
    correct = 0;
    seen = 0;
    epoch_started_at = now();
  }
};

training_job::training_job(job_options options, dataset_ptr data, std::vector<int64_t> train,
                           std::vector<int64_t> validation)
  : d_(std::make_unique<impl>()) {
  auto& d = *d_;
  d.o = std::move(options);
  d.data = std::move(data);
  d.train = std::move(train);
  d.validation = std::move(validation);
  if (!d.data || d.data->size() == 0)
    throw pnn::error(error_code::invalid_argument, "training job: empty dataset");
  if (d.train.empty())
    throw pnn::error(error_code::invalid_argument, "training job: no training samples");
  // Upper bounds too: a job from a peer may say anything, and a count of steps
  // (epochs x batches) must fit in 64 bits.
  if (d.o.pause_at < 0)
    throw pnn::error(error_code::invalid_argument,
                     "training job: pause_at " + std::to_string(d.o.pause_at)
                       + ": expected 0 (none) or an epoch");
  if (d.o.epochs < 1 || d.o.epochs > 1000000)
    throw pnn::error(error_code::invalid_argument,
                     "--epochs " + std::to_string(d.o.epochs) + ": expected 1..1000000");
  if (d.o.validate_every < 0)
    throw pnn::error(error_code::invalid_argument,
                     "--validate-every " + std::to_string(d.o.validate_every)
                       + ": expected 0 (after the last epoch only) or more epochs");
  if (d.o.validate_every != 1 && !d.validation.empty() && d.o.schedule.name == "plateau")
    throw pnn::error(error_code::invalid_argument,
                     "--validate-every " + std::to_string(d.o.validate_every)
                       + ": the plateau schedule needs a validation loss after every epoch "
                         "(expected 1)");
  if (d.o.batch_size < 1 || d.o.batch_size > 1000000)
    throw pnn::error(error_code::invalid_argument,
                     "--batch-size " + std::to_string(d.o.batch_size) + ": expected 1..1000000");
  if (!(d.o.optimizer.lr >= 0 && std::isfinite(d.o.optimizer.lr)))
    throw pnn::error(error_code::invalid_argument,
                     "--lr " + std::to_string(d.o.optimizer.lr) + ": expected a finite number >= 0");
  if (d.o.threads < 1)
    throw pnn::error(error_code::invalid_argument,
                     "--threads " + std::to_string(d.o.threads) + ": expected at least 1");
  const auto& validation_data = d.o.validation_data ? *d.o.validation_data : *d.data;
  for (const auto& [v, set] : {std::pair{&d.train, d.data.get()}, {&d.validation, &validation_data}})
    for (auto i : *v)
      if (i < 0 || i >= set->size())
        throw pnn::error(error_code::invalid_argument,
                         "training job: sample index " + std::to_string(i) + " outside 0.."
                           + std::to_string(set->size() - 1));
  d.criterion = d.o.criterion ? d.o.criterion : cross_entropy();
  d.model = make_seeded_model(d.o.model, d.data->channels(), d.data->num_classes(), d.o.seed);
  d.model->train();
  d.optimizer = d.o.make_optimizer ? d.o.make_optimizer(d.model->parameters())
                                   : make_optimizer(d.o.optimizer, d.model->parameters());
  if (!d.optimizer)
    throw pnn::error(error_code::invalid_argument,
                     "training job: the optimizer factory returned none");
  set_learning_rate(*d.optimizer, d.o.optimizer.lr);
  d.schedule = make_schedule(d.o.schedule, d.o.optimizer.lr, d.batches_per_epoch(), d.o.epochs);
  d.started = clock_type::now();
  d.begin_epoch();
}

training_job::~training_job() = default;

bool training_job::run(int64_t max_batches) {
  auto& d = *d_;
  if (done())
    return true;
  use_intra_op_threads(d.o.threads);
  d.model->train();
  const auto per_epoch = d.batches_per_epoch();
  const auto bs = static_cast<size_t>(d.o.batch_size);
  // One optimizer step on samples src[begin, end).
  auto train_batch = [&](const std::vector<int64_t>& src, size_t begin, size_t end) {
    auto x = make_batch(d.data->images, src, begin, end, d.o.train_transform, &d.aug);
    auto idx = torch::from_blob(const_cast<int64_t*>(src.data() + begin),
                                {static_cast<int64_t>(end - begin)}, torch::kInt64);
    auto y = d.data->labels.index_select(0, idx);
    const double lr = d.schedule->lr();
    set_learning_rate(*d.optimizer, lr);
    // Gradients set to none, not zeroed: backward then hands each parameter its
    // gradient buffer instead of adding it to a zeroed one.
    for (auto& group : d.optimizer->param_groups())
      for (auto& p : group.params())
        p.mutable_grad().reset();
    auto logits = d.model->forward(x);
    auto loss = d.criterion(logits, y);
    loss.backward();
    if (after_backward)
      after_backward(lr);
    d.optimizer->step();
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value))
      throw pnn::error(error_code::run_failed,
                       "training diverged: loss is " + std::to_string(loss_value) + " at epoch "
                         + std::to_string(d.epoch + 1) + ", batch " + std::to_string(d.batch + 1)
                         + " (try a lower --lr)");
    const auto count = static_cast<int64_t>(end - begin);
    d.loss_sum += loss_value * static_cast<double>(count);
    d.correct += logits.argmax(1).eq(y).sum().item<int64_t>();
    d.seen += count;
    d.samples += count;
    ++d.batch;
    ++d.steps;
    if (d.schedule->per_batch())
      d.schedule->step();
    step_record rec{d.now(), d.epoch, d.batch - 1, d.steps, loss_value, lr};
    d.steps_log.push_back(rec);
    if (on_step)
      on_step(rec);
  };
  for (int64_t n = 0; n < max_batches && !done(); ++n) {
    // The batch: the next slice of this epoch's order, or the shared queue's next.
    const std::vector<int64_t>* source = &d.order;
    size_t begin = static_cast<size_t>(d.batch) * bs;
    size_t end = std::min(d.order.size(), begin + bs);
    bool epoch_over = false;
    if (d.o.shared_batches) {
      epoch_over = !d.o.shared_batches->next(d.epoch, d.shared_batch);
      source = &d.shared_batch;
      begin = 0;
      end = d.shared_batch.size();
    }
    if (!epoch_over) {
      train_batch(*source, begin, end);
      epoch_over = !d.o.shared_batches && d.batch == per_epoch;
    }
    if (epoch_over) {
      epoch_record e;
      e.epoch = d.epoch + 1;
      // (A job on a shared queue may find an epoch's batches all taken by others.)
      e.train_loss = d.seen > 0 ? d.loss_sum / static_cast<double>(d.seen) : NAN;
      e.train_accuracy =
        d.seen > 0 ? static_cast<double>(d.correct) / static_cast<double>(d.seen) : NAN;
      e.val_loss = NAN;
      e.val_accuracy = NAN;
      const bool last = d.epoch + 1 >= d.o.epochs || d.epoch + 1 == d.o.pause_at;
      const bool validate = !d.validation.empty()
        && (last || (d.o.validate_every > 0 && (d.epoch + 1) % d.o.validate_every == 0));
      if (validate) {
        d.last_val = evaluate(d.o.validation_data ? *d.o.validation_data : *d.data, d.validation);
        e.val_loss = d.last_val->loss;
        e.val_accuracy = d.last_val->accuracy;
      }
      if (d.validation.empty() ? d.seen > 0 : validate) // (plateau validates every epoch)
        d.schedule->observe(d.validation.empty() ? e.train_loss : e.val_loss);
      d.schedule->end_epoch();
      e.lr = d.schedule->lr();
      ++d.epoch;
      d.batch = 0;
      e.time = d.now();
      e.seconds = e.time - d.epoch_started_at;
      d.epochs_log.push_back(e);
      if (d.o.checkpoint_every > 0 && !d.o.checkpoint_dir.empty()
          && d.epoch % d.o.checkpoint_every == 0) {
        save_checkpoint(d.o.checkpoint_dir / ("epoch_" + std::to_string(d.epoch) + ".pt"));
        save_checkpoint(d.o.checkpoint_dir / "latest.pt");
      }
      if (on_epoch)
        on_epoch(e);
      if (!done())
        d.begin_epoch();
    }
  }
  return done();
}

void training_job::run_to_end() {
  while (!run(1 << 20)) {
  }
}

bool training_job::done() const {
  const auto& o = d_->o;
  return d_->epoch >= (o.pause_at > 0 ? std::min(o.pause_at, o.epochs) : o.epochs);
}
int64_t training_job::epochs_done() const {
  return d_->epoch;
}
int64_t training_job::batch_in_epoch() const {
  return d_->batch;
}
int64_t training_job::batches_per_epoch() const {
  return d_->batches_per_epoch();
}
int64_t training_job::steps_done() const {
  return d_->steps;
}
int64_t training_job::samples_done() const {
  return d_->samples;
}
double training_job::elapsed_seconds() const {
  return d_->now();
}
void training_job::set_threads(int threads) {
  d_->o.threads = std::max(1, threads);
}
int training_job::threads() const {
  return d_->o.threads;
}
const std::vector<step_record>& training_job::step_records() const {
  return d_->steps_log;
}
const std::vector<epoch_record>& training_job::epoch_records() const {
  return d_->epochs_log;
}
const std::optional<evaluation>& training_job::last_validation() const {
  return d_->last_val;
}
std::shared_ptr<models::Network> training_job::model() const {
  return d_->model;
}
torch::optim::Optimizer& training_job::optimizer() {
  return *d_->optimizer;
}
const lr_schedule& training_job::schedule() const {
  return *d_->schedule;
}
const job_options& training_job::options() const {
  return d_->o;
}

evaluation training_job::evaluate(const dataset& data, const std::vector<int64_t>& indices) {
  use_intra_op_threads(d_->o.threads);
  return training::evaluate(*d_->model, data, indices, d_->o.eval_transform, d_->o.eval_batch_size);
}

namespace {

std::map<std::string, std::string> settings_map(const std::string& text) {
  std::map<std::string, std::string> m;
  std::istringstream in{text};
  std::string item;
  while (std::getline(in, item, ';')) {
    auto eq = item.find('=');
    if (eq != std::string::npos)
      m[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return m;
}

} // namespace

std::string settings_difference(const std::string& was, const std::string& now) {
  const auto a = settings_map(was);
  const auto b = settings_map(now);
  std::string diff;
  auto add = [&](const std::string& key) {
    auto i = a.find(key);
    auto j = b.find(key);
    std::string x = i != a.end() ? i->second : "(none)";
    std::string y = j != b.end() ? j->second : "(none)";
    if (x != y)
      diff += (diff.empty() ? "" : ", ") + key + " " + x + ", now " + y;
  };
  for (const auto& [key, value] : a)
    add(key);
  for (const auto& [key, value] : b)
    if (!a.count(key))
      add(key);
  return diff;
}

void training_job::save_checkpoint(const fs::path& file) const {
  const auto& d = *d_;
  nlohmann::json meta;
  meta["format"] = 1;
  meta["model"] = d.o.model;
  meta["optimizer"] = d.o.optimizer.name;
  meta["epoch"] = d.epoch;
  meta["batch"] = d.batch;
  meta["steps"] = d.steps;
  meta["samples"] = d.samples;
  meta["elapsed"] = d.now();
  meta["loss_sum"] = d.loss_sum;
  meta["correct"] = d.correct;
  meta["seen"] = d.seen;
  meta["epoch_started_at"] = d.epoch_started_at;
  meta["settings"] = d.o.settings;
  std::ostringstream rng_state;
  rng_state << d.aug;
  meta["rng"] = rng_state.str();
  meta["schedule"] = d.schedule->state();
  // The steps go to the steps file beside the checkpoint, before it: a checkpoint
  // never names steps its file lacks.
  const auto steps_file = file.parent_path() / steps_file_name;
  const int64_t keep = steps_file == d.steps_file ? d.steps_in_file : 0;
  write_steps_file(steps_file, keep, encode_steps(d.steps_log, static_cast<size_t>(keep)));
  d.steps_file = steps_file;
  d.steps_in_file = static_cast<int64_t>(d.steps_log.size());
  meta["steps_logged"] = d.steps_in_file;
  auto& epochs = meta["epochs_log"] = nlohmann::json::array();
  for (const auto& r : d.epochs_log)
    epochs.push_back(to_json(r));
  std::ostringstream bytes;
  try {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive, optimizer_archive;
    d.model->save(model_archive);
    d.optimizer->save(optimizer_archive);
    archive.write("model", model_archive);
    archive.write("optimizer", optimizer_archive);
    archive.write("meta", c10::IValue(meta.dump()));
    archive.save_to(bytes);
  } catch (const c10::Error& e) {
    throw pnn::error(error_code::io_error,
                     file.string()
                       + ": cannot serialise checkpoint: " + e.what_without_backtrace());
  }
  write_file_atomic(file, bytes.str());
}

void training_job::load_checkpoint(const fs::path& file) {
  auto& d = *d_;
  std::error_code ec;
  if (!fs::exists(file, ec))
    throw pnn::error(error_code::file_not_found, file.string() + ": checkpoint not found");
  nlohmann::json meta;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(file.string());
    c10::IValue meta_value;
    archive.read("meta", meta_value);
    meta = nlohmann::json::parse(meta_value.toStringRef());
    if (meta.at("model").get<std::string>() != d.o.model
        || meta.at("optimizer").get<std::string>() != d.o.optimizer.name)
      throw pnn::error(error_code::malformed_file,
                       file.string() + ": checkpoint is for model "
                         + meta.at("model").get<std::string>() + " with "
                         + meta.at("optimizer").get<std::string>() + ", this job trains "
                         + d.o.model + " with " + d.o.optimizer.name);
    const auto settings = meta.value("settings", std::string{});
    if (!d.o.settings.empty() && !settings.empty() && settings != d.o.settings)
      throw pnn::error(error_code::malformed_file,
                       file.string() + ": checkpoint was taken with other settings ("
                         + settings_difference(settings, d.o.settings) + ")");
    torch::serialize::InputArchive model_archive, optimizer_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optimizer_archive);
    d.model->load(model_archive);
    d.optimizer->load(optimizer_archive);
  } catch (const c10::Error& e) {
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": not a checkpoint of this job (" + e.what_without_backtrace()
                       + ")");
  } catch (const nlohmann::json::exception& e) {
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": checkpoint metadata unreadable (" + e.what() + ")");
  }
  try {
    d.epoch = meta.at("epoch").get<int64_t>();
    d.batch = meta.at("batch").get<int64_t>();
    d.steps = meta.at("steps").get<int64_t>();
    d.samples = meta.value("samples", int64_t{0});
    d.elapsed_before = meta.at("elapsed").get<double>();
    d.started = clock_type::now();
    d.begin_epoch(); // the epoch's order; its sums and generator as at its start
    // Mid-epoch, the sums and the augmentation generator go on from where they
    // were. At an epoch's start (an epoch-end checkpoint holds the finished epoch's
    // sums and generator) they stay as begin_epoch set them.
    if (d.batch > 0) {
      d.loss_sum = meta.at("loss_sum").get<double>();
      d.correct = meta.at("correct").get<int64_t>();
      d.seen = meta.at("seen").get<int64_t>();
      d.epoch_started_at = meta.at("epoch_started_at").get<double>();
      std::istringstream rng_state{meta.at("rng").get<std::string>()};
      rng_state >> d.aug;
    }
    d.schedule->load_state(meta.at("schedule"));
    d.steps_log.clear();
    d.steps_file.clear();
    d.steps_in_file = 0;
    if (meta.contains("steps_log")) { // checkpoints before steps.bin carried them
      for (const auto& j : meta.at("steps_log"))
        d.steps_log.push_back(step_from_json(j));
    } else {
      const auto steps_file = file.parent_path() / steps_file_name;
      const auto count = meta.at("steps_logged").get<int64_t>();
      if (count < 0)
        throw pnn::error(error_code::malformed_file,
                         file.string() + ": checkpoint names a negative number of steps");
      d.steps_log = decode_steps(read_steps_file(steps_file, count), steps_file.string());
      d.steps_file = steps_file;
      d.steps_in_file = count;
    }
    d.epochs_log.clear();
    for (const auto& j : meta.at("epochs_log"))
      d.epochs_log.push_back(epoch_from_json(j));
  } catch (const nlohmann::json::exception& e) {
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": checkpoint metadata incomplete (" + e.what() + ")");
  }
  if (d.batch < 0 || (!d.o.shared_batches && d.batch > d.batches_per_epoch()) || d.epoch < 0)
    throw pnn::error(error_code::malformed_file,
                     file.string() + ": checkpoint position does not fit this job's data");
}

} // namespace pnn::training
