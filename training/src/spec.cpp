#include <pnn/training/spec.hpp>

#include <pnn/error.hpp>

#include <cmath>
#include <sstream>

namespace pnn::training {

namespace {

[[noreturn]] void bad(const std::string& what, const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, what + ": " + msg);
}

double to_number(const std::string& what, const std::string& key, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !std::isfinite(v))
    bad(what, key + "=" + text + ": expected a number");
  return v;
}

} // namespace

spec spec::parse(const std::string& text, const std::string& what) {
  spec s;
  s.what = what;
  auto colon = text.find(':');
  s.name = text.substr(0, colon);
  if (s.name.empty())
    bad(what, "'" + text + "': expected a name, e.g. " + what + " NAME[:key=value,...]");
  if (colon == std::string::npos)
    return s;
  std::stringstream rest{text.substr(colon + 1)};
  for (std::string item; std::getline(rest, item, ',');) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      bad(what, "'" + item + "' in '" + text + "': expected key=value");
    auto key = item.substr(0, eq);
    if (!s.params.emplace(key, item.substr(eq + 1)).second)
      bad(what, "'" + key + "' given twice in '" + text + "'");
  }
  return s;
}

double spec::take_number(const std::string& key, double fallback) {
  auto i = params.find(key);
  if (i == params.end())
    return fallback;
  auto v = to_number(what, key, i->second);
  params.erase(i);
  return v;
}

std::vector<double> spec::take_numbers(const std::string& key, std::vector<double> fallback) {
  auto i = params.find(key);
  if (i == params.end())
    return fallback;
  std::vector<double> result;
  std::stringstream in{i->second};
  for (std::string item; std::getline(in, item, '/');)
    result.push_back(to_number(what, key, item));
  params.erase(i);
  return result;
}

bool spec::take_bool(const std::string& key, bool fallback) {
  auto i = params.find(key);
  if (i == params.end())
    return fallback;
  auto text = i->second;
  params.erase(i);
  if (text == "1" || text == "true" || text == "yes")
    return true;
  if (text == "0" || text == "false" || text == "no")
    return false;
  bad(what, key + "=" + text + ": expected true or false");
}

std::string spec::take_string(const std::string& key, std::string fallback) {
  auto i = params.find(key);
  if (i == params.end())
    return fallback;
  auto v = i->second;
  params.erase(i);
  return v;
}

void spec::expect_consumed() const {
  if (params.empty())
    return;
  std::string keys;
  for (const auto& kv : params)
    keys += (keys.empty() ? "" : ", ") + kv.first;
  bad(what, "unknown parameter(s) for " + name + ": " + keys);
}

} // namespace pnn::training
