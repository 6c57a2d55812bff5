#pragma once

namespace pnn::runtime {

/// pnn-node's command line: dispatches the verb, parses its flags (and --config
/// FILE), runs it and maps errors to exit codes: 0 success, 2 bad input, 1 failed run.
/// Errors are printed as one line on stderr.
int run_cli(int argc, const char* const* argv);

} // namespace pnn::runtime
