#pragma once

#include <map>
#include <string>
#include <vector>

namespace pnn::training {

/// A name with optional parameters, as written on the command line:
/// "cosine", "cosine:t_max=10,eta_min=1e-6", "sgd:momentum=0.9,nesterov=1".
struct spec {
  std::string name;
  std::map<std::string, std::string> params;

  /// Parses `text`; `what` names the flag in error messages. Throws pnn::error.
  static spec parse(const std::string& text, const std::string& what);

  /// Reads and removes a parameter; `fallback` when absent. Throws pnn::error when
  /// the value is not a number.
  double take_number(const std::string& key, double fallback);
  std::vector<double> take_numbers(const std::string& key, std::vector<double> fallback);
  bool take_bool(const std::string& key, bool fallback);
  std::string take_string(const std::string& key, std::string fallback);

  /// Throws pnn::error if any parameter was not taken (a typo, say).
  void expect_consumed() const;

  std::string what; ///< the flag this spec came from, for messages
};

} // namespace pnn::training
