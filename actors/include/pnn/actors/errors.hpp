#pragma once

#include <pnn/error.hpp>

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include <string>

namespace pnn {

/// The CAF error category of pnn::error_code.
constexpr caf::atom_value error_category = caf::atom("pnn");

/// pnn::error_code as a caf::error (found by ADL, so `caf::error e = code;` works
/// in actor code).
caf::error make_error(error_code code);

/// A caf::error carrying a message, e.g. from a caught pnn::error.
caf::error make_error(error_code code, std::string message);

/// A caught pnn::error as a caf::error.
caf::error to_caf_error(const pnn::error& e);

/// The error code of a caf::error in pnn's category (run_failed for any other).
error_code code_of(const caf::error& e);

/// Registers pnn's error category so that CAF renders pnn errors by name.
void add_error_category(caf::actor_system_config& cfg);

} // namespace pnn
