#pragma once

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <string>

namespace pnn::runtime {

/// Parses a program's own flags the way pnn-node parses a command's: long flags
/// declared in `flags` (Boost.Program_options, values stored by po::value(&x)),
/// `--help`/`-h` printing "usage: PROGRAM SYNOPSIS" and every flag, and a bad flag
/// or value answered with one line on stderr, "PROGRAM: <what was wrong>".
///
/// Returns -1 when the program should go on, else the exit code to return from
/// main: 0 after --help, 2 after a bad flag (unknown flag, missing or malformed
/// value, a flag given twice). For example:
///
///   namespace po = boost::program_options;
///   po::options_description flags{"flags"};
///   auto flag = flags.add_options();
///   flag("epochs", po::value(&epochs)->default_value(2), "epochs to train");
///   if (int code = pnn::runtime::parse_program_flags("my_tool", "[--epochs N]", "What it does.",
///                                                    flags, argc, argv); code >= 0)
///     return code;
int parse_program_flags(const std::string& program, const std::string& synopsis,
                        const std::string& description,
                        const boost::program_options::options_description& flags, int argc,
                        const char* const* argv);

} // namespace pnn::runtime
