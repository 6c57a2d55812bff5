#include <pnn/models/registry.hpp>
#include <pnn/training/dataset.hpp>

#include <cstdio>
#include <string>

namespace pnn::runtime {

int run_models() {
  std::printf("%-12s %s\n", "model", "description");
  for (const auto& m : models::list_models())
    std::printf("%-12s %s\n", m.name.c_str(), m.description.c_str());
  return 0;
}

int run_datasets(const std::string& data_dir) {
  std::printf("%-16s %-6s %s\n", "dataset", "found", "description");
  for (const auto& d : training::list_datasets(data_dir)) {
    std::string where = d.default_dir.empty() ? "" : " [" + d.default_dir.string() + "]";
    std::printf("%-16s %-6s %s%s\n", d.name.c_str(), d.found ? "yes" : "no", d.description.c_str(),
                where.c_str());
  }
  return 0;
}

} // namespace pnn::runtime
