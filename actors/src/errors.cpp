#include <pnn/actors/errors.hpp>

#include <caf/make_message.hpp>
#include <caf/message.hpp>

namespace pnn {

caf::error make_error(error_code code) {
  return caf::error{static_cast<uint8_t>(code), error_category};
}

caf::error make_error(error_code code, std::string message) {
  return caf::error{static_cast<uint8_t>(code), error_category,
                    caf::make_message(std::move(message))};
}

caf::error to_caf_error(const pnn::error& e) {
  return make_error(e.code(), e.what());
}

error_code code_of(const caf::error& e) {
  if (!e)
    return error_code::none;
  if (e.category() != error_category)
    return error_code::run_failed;
  return static_cast<error_code>(e.code());
}

void add_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(error_category,
                         [](uint8_t code, caf::atom_value, const caf::message& ctx) {
                           std::string result = "pnn: ";
                           result += to_string(static_cast<error_code>(code));
                           if (ctx.match_elements<std::string>()) {
                             result += ": ";
                             result += ctx.get_as<std::string>(0);
                           }
                           return result;
                         });
}

} // namespace pnn
