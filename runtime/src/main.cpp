#include <pnn/runtime/cli.hpp>
#include <pnn/system.hpp>

int main(int argc, char** argv) {
  pnn::configure_allocator();
  return pnn::runtime::run_cli(argc, argv);
}
