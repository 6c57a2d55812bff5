// The CAF test runner's main() for every pnn suite. Helper processes of
// runtime.cluster (rogue_peer.cpp) instead: `--rogue-peer HOST:PORT` sends a
// published holder bad updates; `--kill-at-version HOST:PORT N PID` kills PID once
// that holder has applied N updates; `--rogue-node MODE` serves a node whose
// worker lies (rogue_node.cpp).
#include <pnn/system.hpp>

#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>

#include "test_util.hpp"

#include <string>
#include <vector>

#include <sys/types.h>

namespace pnn::test {
int rogue_peer_main(const std::string& address);
int kill_at_version_main(const std::string& address, uint64_t version, pid_t victim);
int rogue_node_main(const std::string& mode);
} // namespace pnn::test

int main(int argc, char** argv) {
  pnn::configure_allocator();
  if (argc == 3 && std::string(argv[1]) == "--rogue-peer")
    return pnn::test::rogue_peer_main(argv[2]);
  if (argc == 3 && std::string(argv[1]) == "--rogue-node")
    return pnn::test::rogue_node_main(argv[2]);
  if (argc == 5 && std::string(argv[1]) == "--kill-at-version")
    return pnn::test::kill_at_version_main(argv[2], std::stoull(argv[3]),
                                           static_cast<pid_t>(std::stol(argv[4])));
  // The runner's watchdog (`-r SECONDS`, from ctest) stretches with the tests' own
  // waits under PNN_TEST_TIME_SCALE (sanitizer builds run several times slower).
  std::vector<std::string> args(argv, argv + argc);
  const double scale = pnn::test::time_scale();
  for (size_t i = 1; i + 1 < args.size(); ++i)
    if (args[i] == "-r" && !args[i + 1].empty() && args[i + 1].find_first_not_of("0123456789") == std::string::npos)
      args[i + 1] = std::to_string(static_cast<long>(std::stol(args[i + 1]) * scale));
  std::vector<char*> scaled;
  for (auto& a : args)
    scaled.push_back(a.data());
  return caf::test::main(static_cast<int>(scaled.size()), scaled.data());
}
