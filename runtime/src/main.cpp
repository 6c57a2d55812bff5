#include <pnn/runtime/cli.hpp>
#include <pnn/training/system.hpp>

int main(int argc, char** argv) {
  pnn::training::configure_allocator();
  return pnn::runtime::run_cli(argc, argv);
}
