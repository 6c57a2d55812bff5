// The CAF test runner's main() for every pnn suite; `--rogue-peer HOST:PORT` runs
// the misbehaving network peer of runtime.cluster instead (rogue_peer.cpp).
#include <pnn/training/system.hpp>

#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>

#include <string>

namespace pnn::test {
int rogue_peer_main(const std::string& address);
}

int main(int argc, char** argv) {
  pnn::training::configure_allocator();
  if (argc == 3 && std::string(argv[1]) == "--rogue-peer")
    return pnn::test::rogue_peer_main(argv[2]);
  return caf::test::main(argc, argv);
}
