#include <pnn/training/records.hpp>

#include <pnn/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace fs = std::filesystem;

namespace pnn::training {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

const std::vector<std::string>& record_file_names() {
  static const std::vector<std::string> names{"steps.csv", "epochs.csv", "metrics.json",
                                              "confusion.csv"};
  return names;
}

std::vector<std::string> write_record_files(const std::filesystem::path& dir,
                                            const std::vector<std::string>& names,
                                            const std::vector<std::string>& contents) {
  const auto& allowed = record_file_names();
  std::vector<std::string> refused;
  std::vector<std::string> written;
  for (size_t f = 0; f < names.size(); ++f) {
    const auto& name = names[f];
    const bool known = std::find(allowed.begin(), allowed.end(), name) != allowed.end();
    const bool again = std::find(written.begin(), written.end(), name) != written.end();
    if (!known || again || f >= contents.size()) {
      refused.push_back(name);
      continue;
    }
    write_file_atomic(dir / name, contents[f]);
    written.push_back(name);
  }
  return refused;
}

namespace {

double number_or_nan(const nlohmann::json& j) {
  return j.is_number() ? j.get<double>() : NAN;
}

std::string fmt(double v) {
  if (!std::isfinite(v))
    return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

} // namespace

nlohmann::json to_json(const step_record& r) {
  return {{"time", r.time},
          {"epoch", r.epoch},
          {"batch", r.batch},
          {"step", r.step},
          {"loss", number_or_null(r.loss)},
          {"lr", r.lr}};
}

nlohmann::json to_json(const epoch_record& r) {
  return {{"epoch", r.epoch},
          {"time", r.time},
          {"seconds", r.seconds},
          {"train_loss", number_or_null(r.train_loss)},
          {"train_accuracy", number_or_null(r.train_accuracy)},
          {"val_loss", number_or_null(r.val_loss)},
          {"val_accuracy", number_or_null(r.val_accuracy)},
          {"lr", r.lr}};
}

step_record step_from_json(const nlohmann::json& j) {
  return {j.at("time").get<double>(),  j.at("epoch").get<int64_t>(), j.at("batch").get<int64_t>(),
          j.at("step").get<int64_t>(), number_or_nan(j.at("loss")),  j.at("lr").get<double>()};
}

epoch_record epoch_from_json(const nlohmann::json& j) {
  epoch_record r;
  r.epoch = j.at("epoch").get<int64_t>();
  r.time = j.at("time").get<double>();
  r.seconds = j.at("seconds").get<double>();
  r.train_loss = number_or_nan(j.at("train_loss"));
  r.train_accuracy = number_or_nan(j.at("train_accuracy"));
  r.val_loss = number_or_nan(j.at("val_loss"));
  r.val_accuracy = number_or_nan(j.at("val_accuracy"));
  r.lr = j.at("lr").get<double>();
  return r;
}

std::string steps_csv(const std::vector<step_record>& records) {
  std::ostringstream out;
  out << "time,epoch,batch,step,loss,lr\n";
  for (const auto& r : records)
    out << fmt(r.time) << ',' << r.epoch << ',' << r.batch << ',' << r.step << ',' << fmt(r.loss)
        << ',' << fmt(r.lr) << '\n';
  return out.str();
}

std::string epochs_csv(const std::vector<epoch_record>& records) {
  std::ostringstream out;
  out << "epoch,time,seconds,train_loss,train_accuracy,val_loss,val_accuracy,lr\n";
  for (const auto& r : records)
    out << r.epoch << ',' << fmt(r.time) << ',' << fmt(r.seconds) << ',' << fmt(r.train_loss) << ','
        << fmt(r.train_accuracy) << ',' << fmt(r.val_loss) << ',' << fmt(r.val_accuracy) << ','
        << fmt(r.lr) << '\n';
  return out.str();
}

std::string confusion_csv(const std::vector<std::vector<int64_t>>& confusion,
                          const std::vector<std::string>& classes) {
  auto name = [&](size_t c) {
    auto n = c < classes.size() ? classes[c] : std::to_string(c);
    return "\"" + n + "\"";
  };
  std::ostringstream out;
  out << "true\\predicted";
  for (size_t c = 0; c < confusion.size(); ++c)
    out << ',' << name(c);
  out << '\n';
  for (size_t r = 0; r < confusion.size(); ++r) {
    out << name(r);
    for (auto v : confusion[r])
      out << ',' << v;
    out << '\n';
  }
  return out.str();
}

} // namespace pnn::training
