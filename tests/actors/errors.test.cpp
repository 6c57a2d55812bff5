#define CAF_SUITE actors.errors
#include <caf/test/dsl.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/actors/protocol.hpp>
#include <pnn/system.hpp>

#include <caf/all.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>

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

CAF_TEST(a byte field that claims more than the message holds is refused without allocating it) {
  param_blob sent;
  sent.version = 7;
  sent.layout = 42;
  sent.count = 2;
  sent.bytes = {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
  std::vector<char> buf;
  caf::binary_serializer out{(caf::execution_unit*) nullptr, buf};
  CAF_REQUIRE(!out(sent));
  param_blob back;
  caf::binary_deserializer in{(caf::execution_unit*) nullptr, buf.data(), buf.size()};
  CAF_REQUIRE(!in(back));
  CAF_CHECK(back.bytes == sent.bytes);
  CAF_CHECK_EQUAL(back.count, 2u);
  // The same three numbers, then a length of 4 GiB and nothing behind it: CAF 0.17
  // alone would resize the vector first (4 GiB for 29 bytes).
  std::vector<char> lie;
  caf::binary_serializer head{(caf::execution_unit*) nullptr, lie};
  CAF_REQUIRE(!head(sent.version, sent.layout, sent.count));
  for (char c : {'\xF0', '\xFF', '\xFF', '\xFF', '\x0F'})
    lie.push_back(c);
  const auto rss = pnn::peak_rss_bytes();
  param_blob refused;
  caf::binary_deserializer from_peer{(caf::execution_unit*) nullptr, lie.data(), lie.size()};
  CAF_CHECK(from_peer(refused) == caf::sec::end_of_stream);
  CAF_CHECK(refused.bytes.empty());
  CAF_CHECK_LESS(pnn::peak_rss_bytes() - rss, 64 << 20);
  // A job's checkpoint bytes go the same way.
  job_checkpoint c;
  c.out_dir = "run/fold0";
  std::vector<char> lying_checkpoint;
  caf::binary_serializer fields{(caf::execution_unit*) nullptr, lying_checkpoint};
  CAF_REQUIRE(!fields(c.id, c.out_dir, c.epoch, c.mid_epoch));
  for (char x : {'\xF0', '\xFF', '\xFF', '\xFF', '\x0F'})
    lying_checkpoint.push_back(x);
  caf::binary_deserializer checkpoint{(caf::execution_unit*) nullptr, lying_checkpoint.data(),
                                      lying_checkpoint.size()};
  CAF_CHECK(checkpoint(c) == caf::sec::end_of_stream);
  CAF_CHECK_LESS(pnn::peak_rss_bytes() - rss, 64 << 20);
}
