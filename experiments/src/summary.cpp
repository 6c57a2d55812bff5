#include <pnn/experiments/summary.hpp>

#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/training/folders.hpp>
#include <pnn/training/records.hpp>

#include <cmath>

namespace fs = std::filesystem;
using nlohmann::json;

namespace pnn {

namespace {

/// Reads typed keys out of one JSON object, removing each from `rest`; a key of the
/// wrong type is an error naming the file and the key.
class reader {
public:
  reader(const json& j, std::string where) : rest_(j), where_(std::move(where)) {
  }

  bool has(const char* key) const {
    return rest_.contains(key);
  }
  std::string text(const char* key, std::string fallback = "") {
    return take<std::string>(key, std::move(fallback), [](const json& v) { return v.is_string(); });
  }
  bool flag(const char* key, bool fallback = false) {
    return take<bool>(key, fallback, [](const json& v) { return v.is_boolean(); });
  }
  int64_t integer(const char* key, int64_t fallback = 0) {
    return take<int64_t>(key, fallback, [](const json& v) { return v.is_number_integer(); });
  }
  /// A number; null reads as NaN (what was written for NaN).
  double real(const char* key, double fallback = 0) {
    auto i = rest_.find(key);
    if (i == rest_.end())
      return fallback;
    if (i->is_null()) {
      rest_.erase(i);
      return std::nan("");
    }
    if (!i->is_number())
      bad(key, "a number");
    double v = i->get<double>();
    rest_.erase(i);
    return v;
  }
  std::optional<double> maybe_real(const char* key) {
    if (!has(key))
      return std::nullopt;
    return real(key);
  }
  std::optional<int64_t> maybe_integer(const char* key) {
    if (!has(key))
      return std::nullopt;
    return integer(key);
  }
  /// An array (or nothing): removed from the rest and returned.
  json array(const char* key) {
    auto i = rest_.find(key);
    if (i == rest_.end())
      return json::array();
    if (!i->is_array())
      bad(key, "an array");
    json v = std::move(*i);
    rest_.erase(i);
    return v;
  }
  json rest() && {
    return std::move(rest_);
  }
  const std::string& where() const {
    return where_;
  }

private:
  template <class T, class Check>
  T take(const char* key, T fallback, Check ok) {
    auto i = rest_.find(key);
    if (i == rest_.end())
      return fallback;
    if (!ok(*i))
      bad(key, "another type");
    T v = i->get<T>();
    rest_.erase(i);
    return v;
  }
  [[noreturn]] void bad(const char* key, const char* expected) const {
    throw pnn::error(error_code::malformed_file,
                     where_ + ": \"" + key + "\" is not " + expected + " as pnn writes it");
  }

  json rest_;
  std::string where_;
};

json object_or_throw(const json& j, const std::string& where) {
  if (!j.is_object())
    throw pnn::error(error_code::malformed_file, where + ": expected a JSON object");
  return j;
}

} // namespace

job_summary job_summary_from_json(const json& j, const std::string& where) {
  reader r{object_or_throw(j, where), where};
  job_summary s;
  s.model = r.text("model");
  s.scheduler = r.text("scheduler");
  s.fold = static_cast<int32_t>(r.integer("fold"));
  s.config = r.text("config");
  s.dir = r.text("dir");
  s.host = r.text("host", "local");
  s.slot = static_cast<int32_t>(r.integer("slot"));
  s.ok = r.flag("ok");
  s.error = r.text("error");
  s.val_accuracy = r.real("val_accuracy", std::nan(""));
  s.val_loss = r.real("val_loss", std::nan(""));
  s.train_loss = r.real("train_loss", std::nan(""));
  s.started_at = r.real("started_at");
  s.finished_at = r.real("finished_at");
  s.more = std::move(r).rest();
  return s;
}

json to_json(const job_summary& s) {
  json j = s.more;
  j.update({{"model", s.model},
            {"scheduler", s.scheduler},
            {"fold", s.fold},
            {"host", s.host},
            {"slot", s.slot},
            {"ok", s.ok},
            {"error", s.error},
            {"val_accuracy", training::number_or_null(s.val_accuracy)},
            {"val_loss", training::number_or_null(s.val_loss)},
            {"train_loss", training::number_or_null(s.train_loss)},
            {"started_at", s.started_at},
            {"finished_at", s.finished_at}});
  if (!s.config.empty())
    j["config"] = s.config;
  if (!s.dir.empty())
    j["dir"] = s.dir;
  return j;
}

std::string job_summary::config_name() const {
  return config.empty() ? model + "/" + scheduler : config;
}

std::string job_summary::folder() const {
  if (!dir.empty())
    return dir;
  return training::folder_name(model) + "/" + training::folder_name(scheduler) + "/fold"
    + std::to_string(fold);
}

namespace {

cell_summary cell_from(const json& j, const std::string& where) {
  reader r{object_or_throw(j, where), where};
  cell_summary c;
  c.model = r.text("model");
  c.scheduler = r.text("scheduler");
  c.val_accuracy_mean = r.real("val_accuracy_mean");
  c.val_accuracy_std = r.real("val_accuracy_std");
  c.folds_ok = static_cast<int32_t>(r.integer("folds_ok"));
  c.config = r.text("config");
  if (r.has("optimizer"))
    c.optimizer = r.text("optimizer");
  c.lr = r.maybe_real("lr");
  c.batch_size = r.maybe_integer("batch_size");
  if (r.has("pruned") && r.flag("pruned"))
    c.stopped_at_epoch = r.integer("stopped_at_epoch");
  return c;
}

} // namespace

json run_summary::to_json() const {
  json j = more;
  j["command"] = command;
  j["dataset"] = dataset;
  j["wall_seconds"] = wall_seconds;
  j["cpu_utilization_mean"] = cpu_utilization_mean;
  if (cores)
    j["cores"] = *cores;
  if (mode)
    j["mode"] = *mode;
  if (slots)
    j["slots"] = *slots;
  if (command == "kfold") {
    json table_json = json::array(), jobs_json = json::array();
    for (const auto& c : table) {
      json row{{"model", c.model},
               {"scheduler", c.scheduler},
               {"val_accuracy_mean", c.val_accuracy_mean},
               {"val_accuracy_std", c.val_accuracy_std},
               {"folds_ok", c.folds_ok}};
      if (!c.config.empty())
        row["config"] = c.config;
      if (c.optimizer)
        row["optimizer"] = *c.optimizer;
      if (c.lr)
        row["lr"] = *c.lr;
      if (c.batch_size)
        row["batch_size"] = *c.batch_size;
      if (c.stopped_at_epoch) {
        row["pruned"] = true;
        row["stopped_at_epoch"] = *c.stopped_at_epoch;
      }
      table_json.push_back(row);
    }
    for (const auto& s : jobs)
      jobs_json.push_back(pnn::to_json(s));
    j["table"] = table_json;
    j["jobs"] = jobs_json;
  }
  if (test_accuracy)
    j["test_accuracy"] = training::number_or_null(*test_accuracy);
  if (samples_per_second)
    j["samples_per_second"] = *samples_per_second;
  if (final_train_loss)
    j["final_train_loss"] = training::number_or_null(*final_train_loss);
  if (workers)
    j["workers"] = *workers;
  if (per_class_accuracy) {
    json pca = json::array();
    for (auto a : *per_class_accuracy)
      pca.push_back(training::number_or_null(a));
    j["per_class_accuracy"] = pca;
  }
  if (classes)
    j["classes"] = *classes;
  return j;
}

run_summary run_summary::from_json(const json& j, const std::string& file) {
  if (!j.is_object() || !j.contains("command") || !j["command"].is_string())
    throw pnn::error(error_code::malformed_file, file + ": no \"command\" key, not a pnn summary");
  reader r{j, file};
  run_summary s;
  s.command = r.text("command");
  s.dataset = r.text("dataset");
  s.wall_seconds = r.real("wall_seconds");
  s.cpu_utilization_mean = r.real("cpu_utilization_mean");
  s.cores = r.maybe_integer("cores");
  if (r.has("mode"))
    s.mode = r.text("mode");
  s.slots = r.maybe_integer("slots");
  if (s.command == "kfold") {
    for (const auto& c : r.array("table"))
      s.table.push_back(cell_from(c, file + " (table)"));
    for (const auto& job : r.array("jobs"))
      s.jobs.push_back(job_summary_from_json(job, file + " (jobs)"));
  }
  s.test_accuracy = r.maybe_real("test_accuracy");
  s.samples_per_second = r.maybe_real("samples_per_second");
  s.final_train_loss = r.maybe_real("final_train_loss");
  s.workers = r.maybe_integer("workers");
  if (r.has("per_class_accuracy")) {
    s.per_class_accuracy.emplace();
    for (const auto& a : r.array("per_class_accuracy"))
      s.per_class_accuracy->push_back(a.is_number() ? a.get<double>() : std::nan(""));
  }
  if (r.has("classes")) {
    s.classes.emplace();
    for (const auto& c : r.array("classes"))
      if (c.is_string())
        s.classes->push_back(c.get<std::string>());
  }
  s.more = std::move(r).rest();
  if (s.more.contains("worker_list") && s.more["worker_list"].is_array())
    s.worker_list_size = s.more["worker_list"].size();
  return s;
}

run_summary run_summary::read(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw pnn::error(error_code::file_not_found,
                     dir.string() + ": not a folder (expected a run's --out)");
  const auto file = dir / "summary.json";
  if (!fs::exists(file, ec))
    throw pnn::error(error_code::file_not_found,
                     file.string()
                       + ": not found (expected the output folder of a kfold, hogwild or sgd run)");
  json j;
  try {
    j = json::parse(read_text_file(file));
  } catch (const json::exception& e) {
    throw pnn::error(error_code::malformed_file, file.string() + ": " + e.what());
  }
  return from_json(j, file.string());
}

} // namespace pnn
