#pragma once

#include <filesystem>
#include <string>

namespace pnn::training {

/// A model, scheduler or fold name as a folder name ("cosine", "cosine_t_max_10"):
/// letters, digits, '-' and '.' kept, anything else '_', and a leading '.' too, so
/// that it is never "", "." or ".." (always one level below its parent).
std::string folder_name(const std::string& spec);

/// <out>/<model>/<scheduler>/<fold>/, the folder of one job (DESIGN.md "Outputs").
std::filesystem::path job_dir(const std::filesystem::path& out, const std::string& model,
                              const std::string& scheduler, const std::string& fold);

} // namespace pnn::training
