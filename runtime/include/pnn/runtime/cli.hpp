#pragma once

#include <string>

namespace pnn::runtime {

/// pnn-node's command line: dispatches the verb, parses its flags (and --config
/// FILE), runs it and maps errors to exit codes: 0 success, 2 bad input, 1 failed run.
/// Errors are printed as one line on stderr.
int run_cli(int argc, const char* const* argv);

/// The command line run_cli was given, as a shell command that continues it after
/// an interrupt: every argument quoted where needed, plus --resume if it was not
/// there ("" outside run_cli).
std::string continue_command();

/// Says on stderr that the run was interrupted, what finished and how to go on
/// (continue_command); returns pnn::interrupted_exit_code. `saved` says what was
/// kept to go on from.
int report_interrupted(const char* verb, const std::string& what_finished,
                       const std::string& saved = "running jobs saved where they were");

} // namespace pnn::runtime
