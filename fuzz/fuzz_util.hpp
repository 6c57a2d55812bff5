#pragma once

// Shared by the fuzz targets: each input is written to files in a private folder
// (the loaders read files, as they do in a real run).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

namespace pnn::fuzz {

/// A folder of this process (libFuzzer's -fork/-jobs workers each get their own).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("pnn-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    std::atexit([] { std::filesystem::remove_all(scratch()); });
    return d;
  }();
  return dir;
}

/// Writes `size` bytes to `name` in the scratch folder and returns its path.
inline std::filesystem::path write_input(const std::string& name, const uint8_t* data,
                                         size_t size) {
  auto path = scratch() / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size)
    std::abort();
  std::fclose(f);
  return path;
}

} // namespace pnn::fuzz
