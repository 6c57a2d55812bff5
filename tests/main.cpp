// The CAF test runner's main() for every pnn suite.
#include <pnn/training/system.hpp>

#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>

int main(int argc, char** argv) {
  pnn::training::configure_allocator();
  return caf::test::main(argc, argv);
}
