#include <pnn/training/folders.hpp>

namespace pnn::training {

std::string folder_name(const std::string& spec) {
  std::string result;
  for (char c : spec) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
      || c == '-' || c == '.';
    result += keep ? c : '_';
  }
  // Never ".", ".." or a hidden name: a folder name stays one level below its parent.
  if (!result.empty() && result[0] == '.')
    result[0] = '_';
  return result.empty() ? "_" : result;
}

std::filesystem::path job_dir(const std::filesystem::path& out, const std::string& model,
                              const std::string& scheduler, const std::string& fold) {
  return out / folder_name(model) / folder_name(scheduler) / folder_name(fold);
}

} // namespace pnn::training
