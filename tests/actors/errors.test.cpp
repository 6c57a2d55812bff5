#define CAF_SUITE actors.errors
#include <caf/test/dsl.hpp>

#include <pnn/actors/errors.hpp>

#include <caf/all.hpp>

using namespace pnn;

CAF_TEST(pnn error codes travel as caf errors of the pnn category) {
  auto e = make_error(error_code::malformed_file, "data.idx: truncated");
  CAF_CHECK(e.category() == error_category);
  CAF_CHECK(code_of(e) == error_code::malformed_file);
  CAF_CHECK(code_of(caf::error{}) == error_code::none);
  CAF_CHECK(code_of(caf::make_error(caf::sec::request_timeout)) == error_code::run_failed);
  auto from_exception = to_caf_error(pnn::error(error_code::invalid_argument, "--lr: bad"));
  CAF_CHECK(code_of(from_exception) == error_code::invalid_argument);
}

CAF_TEST(an actor system renders pnn errors with their message) {
  caf::actor_system_config cfg;
  add_error_category(cfg);
  caf::actor_system sys{cfg};
  auto text = sys.render(make_error(error_code::malformed_file, "data.idx: truncated"));
  CAF_CHECK(text.find("malformed_file") != std::string::npos);
  CAF_CHECK(text.find("data.idx: truncated") != std::string::npos);
}
