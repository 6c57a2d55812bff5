// What the benches share: comma lists, numbers from flags (a bad one is a one-line
// error and exit 2, not an exception), means.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace pnn::bench {

/// "a,b,,c" -> {"a", "b", "c"}.
inline std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty())
      out.push_back(item);
  return out;
}

/// `value` of `flag` as a T, the whole of it; otherwise says so and exits with 2.
template <class T>
T number(const char* bench, const std::string& flag, const std::string& value) {
  size_t used = 0;
  T out{};
  try {
    if constexpr (std::is_floating_point_v<T>)
      out = static_cast<T>(std::stod(value, &used));
    else if constexpr (std::is_unsigned_v<T>)
      out = value.find('-') == std::string::npos ? static_cast<T>(std::stoull(value, &used)) : T{};
    else
      out = static_cast<T>(std::stoll(value, &used));
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size()
      || (std::is_unsigned_v<T> && value.find('-') != std::string::npos)) {
    std::cerr << bench << ": " << flag << " " << value << ": expected "
              << (std::is_floating_point_v<T> ? "a number"
                    : std::is_unsigned_v<T>   ? "a whole number >= 0"
                                              : "a whole number")
              << "\n";
    std::exit(2);
  }
  return out;
}

/// Each item of a comma list as a number (see number()).
template <class T>
std::vector<T> numbers(const char* bench, const std::string& flag, const std::string& value) {
  std::vector<T> out;
  for (const auto& item : split(value))
    out.push_back(number<T>(bench, flag, item));
  if (out.empty()) {
    std::cerr << bench << ": " << flag << " " << value << ": expected a comma list\n";
    std::exit(2);
  }
  return out;
}

inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    s += x;
  return v.empty() ? NAN : s / static_cast<double>(v.size());
}

} // namespace pnn::bench
