// The CAF test runner's main() for every pnn suite. Helper processes of
// runtime.cluster (rogue_peer.cpp) instead: `--rogue-peer HOST:PORT` sends a
// published holder bad updates; `--kill-at-version HOST:PORT N PID` kills PID once
// that holder has applied N updates.
#include <pnn/system.hpp>

#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>

#include <string>

#include <sys/types.h>

namespace pnn::test {
int rogue_peer_main(const std::string& address);
int kill_at_version_main(const std::string& address, uint64_t version, pid_t victim);
} // namespace pnn::test

int main(int argc, char** argv) {
  pnn::configure_allocator();
  if (argc == 3 && std::string(argv[1]) == "--rogue-peer")
    return pnn::test::rogue_peer_main(argv[2]);
  if (argc == 5 && std::string(argv[1]) == "--kill-at-version")
    return pnn::test::kill_at_version_main(argv[2], std::stoull(argv[3]),
                                           static_cast<pid_t>(std::stol(argv[4])));
  return caf::test::main(argc, argv);
}
