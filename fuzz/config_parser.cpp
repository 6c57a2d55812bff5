// libFuzzer target: `pnn-node <command> --config FILE --dry-run` on an arbitrary FILE,
// through the same entry point as the binary (pnn::runtime::run_cli). With --dry-run
// every flag is parsed and checked but nothing runs, so the only acceptable outcomes
// are exit code 0 (flags ok) and 2 (bad input, one line on stderr). Exit code 1 means
// an exception that was not a pnn::error escaped the checks: a finding.
//
// Input layout: the first byte picks the command, the rest is the config file.

#include "fuzz_util.hpp"

#include <pnn/runtime/cli.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  static const char* const commands[] = {"train", "kfold", "hogwild", "sgd", "serve"};
  const char* command = commands[data[0] % 5];
  const auto file = pnn::fuzz::write_input("run.cfg", data + 1, size - 1);
  const auto out = (pnn::fuzz::scratch() / "out").string();
  const std::string config = file.string();
  const char* argv[] = {"pnn-node",  command, "--config", config.c_str(),
                        "--dry-run", "--out", out.c_str()};
  // serve has no --out.
  const int argc = std::string{command} == "serve" ? 5 : 7;
  const int code = pnn::runtime::run_cli(argc, argv);
  if (code != 0 && code != 2) {
    std::fprintf(stderr, "fuzz_config: exit code %d for %s\n", code, command);
    std::abort();
  }
  return 0;
}
