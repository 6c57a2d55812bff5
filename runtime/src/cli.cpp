#include <pnn/runtime/cli.hpp>

#include <pnn/experiments/hogwild.hpp>
#include <pnn/experiments/kfold.hpp>
#include <pnn/experiments/sgd.hpp>
#include <pnn/error.hpp>
#include <pnn/interrupt.hpp>
#include <pnn/runtime/hogwild_command.hpp>
#include <pnn/runtime/kfold_command.hpp>
#include <pnn/runtime/metrics_endpoint.hpp>
#include <pnn/runtime/program_flags.hpp>
#include <pnn/runtime/report.hpp>
#include <pnn/runtime/serve_command.hpp>
#include <pnn/runtime/sgd_command.hpp>
#include <pnn/runtime/train.hpp>
#include <pnn/training/records.hpp>

#include <boost/program_options.hpp>

#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace po = boost::program_options;

namespace pnn::runtime {

// Defined in list_commands.cpp (they need the model registry and dataset loaders).
int run_models();
int run_datasets(const std::string& data_dir);

namespace {

const char* usage = R"(usage: pnn-node <command> [flags]

commands:
  kfold      K-fold cross-validation of models x schedulers, all cores busy
  hogwild    one model trained by N workers sharing its parameters (HOGWILD)
  sgd        one model trained by workers on many hosts through a parameter holder
  serve      offer this host's cores to coordinators (kfold --hosts, sgd --hosts)
  train      train one model on one dataset and test it
  report     draw a run's plots (gnuplot) and write report.md / report.html
  models     list the models pnn can build
  datasets   list the datasets pnn knows and whether their files are found

Every command takes --help and --config FILE (any long flag as key = value).
Exit codes: 0 success, 2 bad input, 1 failed run, 130 interrupted (train, kfold, sgd).
)";

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

/// Boost.ProgramOptions builds an error's text by replacing placeholders such as
/// %canonical_option% with what the user typed, in a loop that never ends when the
/// typed text holds the placeholder itself (`--%canonical_option%`, found by
/// fuzz/config_parser.cpp). Every '%' the user typed becomes a full-width percent
/// sign before the text is built.
struct safe_option_error : po::error_with_option_name {
  static std::string what_of(po::error_with_option_name& e) {
    auto substitutions = &safe_option_error::m_substitutions;
    for (auto& entry : e.*substitutions) {
      std::string& text = entry.second;
      for (size_t at = text.find('%'); at != std::string::npos; at = text.find('%', at + 3))
        text.replace(at, 1, "\xef\xbc\x85"); // U+FF05
    }
    return e.what();
  }
};

std::string error_text(const po::error& e) {
  if (auto* named = dynamic_cast<const po::error_with_option_name*>(&e))
    return safe_option_error::what_of(const_cast<po::error_with_option_name&>(*named));
  return e.what();
}

/// The value of --out, which every command that writes results requires.
std::string required_out(const std::string& out) {
  if (out.empty())
    bad("--out: required, the folder where results go");
  return out;
}

void print_help(const std::string& verb, const std::string& synopsis,
                const po::options_description& desc) {
  std::cout << "usage: pnn-node " << verb << " " << synopsis << "\n\n"
            << desc << "  --config FILE         read flags from FILE (key = value lines)\n"
            << "  --dry-run             check every flag and the --config file, then exit\n"
            << "  -h [ --help ]         show this help\n";
}

/// Parses argv (after the verb) and the optional --config file into `vm`.
/// Command-line values win over the file. Returns false when --help was asked
/// for: the help is printed and the command has nothing more to do.
bool parse(const std::string& verb, const std::string& synopsis,
           const po::options_description& desc, int argc, const char* const* argv,
           po::variables_map& vm) {
  po::options_description all{desc};
  all.add_options()("config", po::value<std::string>(), "read flags from FILE (key = value)")(
    "dry-run", "check every flag and the --config file, then exit without running")(
    "help,h", "show this help");
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
  } catch (const po::error& e) {
    bad(error_text(e));
  }
  if (vm.count("help")) {
    print_help(verb, synopsis, desc);
    return false;
  }
  if (vm.count("config")) {
    const auto file = vm["config"].as<std::string>();
    std::ifstream in(file);
    if (!in)
      throw pnn::error(error_code::file_not_found, "--config " + file + ": cannot open file");
    try {
      po::store(po::parse_config_file(in, desc, false), vm);
    } catch (const po::error& e) {
      throw pnn::error(error_code::malformed_file, "--config " + file + ": " + error_text(e));
    }
  }
  try {
    po::notify(vm);
  } catch (const po::error& e) {
    bad(error_text(e));
  }
  return true;
}

/// Flags kfold, hogwild and sgd share.
struct run_flags {
  bool no_report = false;
  int metrics_port = 0;
};

/// --metrics-port: the port to listen on, or none (0).
std::optional<uint16_t> metrics_port(int port) {
  if (port < 0 || port > 65535)
    bad("--metrics-port " + std::to_string(port) + ": expected a port 1..65535 (0: none)");
  if (port == 0)
    return std::nullopt;
  return static_cast<uint16_t>(port);
}

/// The end of kfold, hogwild and sgd once their flags are read: with --dry-run,
/// checks the options (`validate(o)`) and runs nothing; else makes sure --out can
/// be written, runs, and draws the report unless --no-report. The run's results are
/// on disk by then: a report that cannot be drawn is a warning.
template <class Options, class Run>
int run_with_report(const char* verb, const po::variables_map& vm, const Options& o, Run run,
                    const run_flags& flags) {
  const auto port = metrics_port(flags.metrics_port);
  if (vm.count("dry-run")) {
    validate(o);
    std::printf("pnn-node %s: flags ok (--dry-run: nothing run)\n", verb);
    return 0;
  }
  pnn::ensure_output_folder(o.out, "--out");
  std::optional<metrics_endpoint> endpoint;
  if (port) {
    endpoint.emplace(verb, "127.0.0.1", *port);
    std::fprintf(stderr, "pnn-node %s: metrics at http://127.0.0.1:%u/metrics\n", verb,
                 static_cast<unsigned>(endpoint->port()));
  }
  const int code = run(o);
  if (code != 0 || flags.no_report)
    return code;
  try {
    report_request r;
    r.dir = o.out;
    run_report(r);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pnn-node %s: results kept, but no report: %s\n", verb, e.what());
  }
  return code;
}

void add_run_flags(po::options_description& desc, run_flags& flags) {
  desc.add_options()("no-report", po::bool_switch(&flags.no_report),
                     "do not draw the report (plots, report.md, report.html) at the end")(
    "metrics-port", po::value(&flags.metrics_port)->default_value(0),
    "serve this run's metrics at http://127.0.0.1:P/metrics in Prometheus' text format (0: "
    "none)");
}

void progress_line_check(const std::string& mode) {
  if (mode != "auto" && mode != "plain" && mode != "none")
    bad("--progress " + mode + ": expected auto, plain or none");
}

int train_command(int argc, const char* const* argv) {
  train_request r;
  std::string out, data_dir;
  po::options_description desc{"train flags"};
  desc.add_options()("dataset", po::value(&r.dataset)->default_value(r.dataset),
                     "fashion-mnist, mnist, cifar10, synthetic, synthetic-cifar")(
    "data-dir", po::value(&data_dir), "folder of the dataset's files")(
    "subset", po::value(&r.subset)->default_value(0), "use the first N training samples (0: all)")(
    "model", po::value(&r.model)->default_value(r.model), "model name (pnn-node models)")(
    "optimizer", po::value(&r.optimizer)->default_value(r.optimizer),
    "adam, adamw or sgd, with parameters: sgd:momentum=0.9,nesterov=1")(
    "lr", po::value(&r.lr)->default_value(r.lr), "learning rate")(
    "scheduler", po::value(&r.scheduler)->default_value(r.scheduler),
    "none, cosine, warm, multistep, step, plateau, with parameters: cosine:t_max=10,unit=epoch")(
    "epochs", po::value(&r.epochs)->default_value(r.epochs),
    "epochs")("batch-size", po::value(&r.batch_size)->default_value(r.batch_size),
              "batch size")("out", po::value(&out), "output folder (required)")(
    "threads", po::value(&r.threads)->default_value(r.threads),
    "LibTorch intra-op threads")("seed", po::value(&r.seed)->default_value(r.seed),
                                 "seed of initialisation, order, augmentation")(
    "checkpoint-every", po::value(&r.checkpoint_every)->default_value(r.checkpoint_every),
    "write a checkpoint every N epochs (0: never)")(
    "validate-every", po::value(&r.validate_every)->default_value(r.validate_every),
    "also evaluate the test set after every N epochs (0: after the last only)")(
    "resume", po::bool_switch(&r.resume), "continue from <out>/.../latest.pt if it exists")(
    "progress", po::value(&r.progress)->default_value(r.progress),
    "auto (in place on a terminal), plain or none");
  po::variables_map vm;
  if (!parse("train", "--dataset D --model M --out DIR [flags]", desc, argc, argv, vm))
    return 0;
  r.out = required_out(out);
  r.data_dir = data_dir;
  r.dry_run = vm.count("dry-run") > 0;
  return run_train(r);
}

std::vector<std::string> split_list(const std::string& text, const std::string& flag) {
  std::vector<std::string> out;
  size_t start = 0;
  // Items are separated by commas; a piece with '=' but no ':' continues the previous
  // item's parameters: "cosine:t_max=3,eta_min=0,warm" is {cosine:t_max=3,eta_min=0, warm}.
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    auto item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!out.empty() && item.find('=') != std::string::npos && item.find(':') == std::string::npos)
      out.back() += "," + item;
    else
      out.push_back(item);
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  for (const auto& item : out)
    if (item.empty())
      bad(flag + " " + text + ": empty name in the list");
  return out;
}

/// --tls-cert, --tls-key, --tls-ca: on every command that connects or serves.
void add_tls_flags(po::options_description& desc, tls_files& tls) {
  desc.add_options()(
    "tls-cert", po::value(&tls.cert),
    "this node's certificate (PEM); with --tls-key and --tls-ca: TLS with mutual authentication")(
    "tls-key", po::value(&tls.key), "this node's private key (PEM)")(
    "tls-ca", po::value(&tls.ca),
    "the cluster's CA certificate (PEM): only peers with a certificate it signed get in");
}

/// A comma list of numbers (--lrs, --batch-sizes): each item read whole by `read`,
/// else a one-line error naming the flag and the item.
template <class T, class Read>
std::vector<T> number_list(const std::string& text, const std::string& flag, const char* expected,
                           Read read) {
  std::vector<T> out;
  for (const auto& item : split_list(text, flag)) {
    size_t used = 0;
    T v{};
    try {
      v = read(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || used == 0)
      bad(flag + " " + text + ": '" + item + "' is not " + expected);
    out.push_back(v);
  }
  return out;
}

/// A grid flag (--optimizers) given with its one-value flag (--optimizer) is an error:
/// which of the two would the run use?
void one_of(const po::variables_map& vm, const char* list, const char* single) {
  if (vm.count(list) && vm.count(single) && !vm[single].defaulted())
    bad(std::string("--") + list + " and --" + single + ": give one (--" + list
        + " a,b,... tries each)");
}

int kfold_command(int argc, const char* const* argv) {
  kfold_options o;
  std::string models = "lenet5", schedulers = "cosine", out, hosts, hosts_file;
  std::string optimizers, lrs, batch_sizes;
  bool no_local = false;
  po::options_description desc{"kfold flags"};
  desc.add_options()("dataset", po::value(&o.dataset)->default_value(o.dataset),
                     "fashion-mnist, mnist, cifar10, synthetic, synthetic-cifar")(
    "data-dir", po::value(&o.data_dir), "folder of the dataset's files")(
    "subset", po::value(&o.subset)->default_value(0), "use the first N training samples (0: all)")(
    "models", po::value(&models)->default_value(models), "comma-separated model names")(
    "schedulers", po::value(&schedulers)->default_value(schedulers),
    "comma-separated schedulers (none, cosine, warm, multistep, step, plateau)")(
    "optimizer", po::value(&o.optimizer)->default_value(o.optimizer),
    "adam, adamw or sgd")("lr", po::value(&o.lr)->default_value(o.lr), "learning rate")(
    "optimizers", po::value(&optimizers),
    "grid: comma-separated optimizers to try (instead of --optimizer): adam,sgd:momentum=0.9")(
    "lrs", po::value(&lrs), "grid: comma-separated learning rates to try (instead of --lr)")(
    "batch-sizes", po::value(&batch_sizes),
    "grid: comma-separated batch sizes to try (instead of --batch-size)")(
    "prune", po::value(&o.prune)->default_value(o.prune),
    "stop configurations that are behind early: none, or halving[:eta=3,min_epochs=1] "
    "(successive halving of the grid by mean validation accuracy over folds)")(
    "folds", po::value(&o.folds)->default_value(o.folds),
    "K")("epochs", po::value(&o.epochs)->default_value(o.epochs),
         "epochs per job")("batch-size", po::value(&o.batch_size)->default_value(o.batch_size),
                           "batch size")("out", po::value(&out), "output folder (required)")(
    "serial", po::bool_switch(&o.serial), "one job at a time with all cores (for comparison)")(
    "slots", po::value(&o.slots)->default_value(0), "jobs at once (0: one per core)")(
    "threads-per-job", po::value(&o.threads_per_job)->default_value(0),
    "intra-op threads per job (0: 1, or all cores with --serial)")(
    "no-tail-threads", "do not raise running jobs' threads when the queue is empty")(
    "seed", po::value(&o.seed)->default_value(o.seed), "seed of every job")(
    "split-seed", po::value(&o.split_seed)->default_value(o.split_seed), "seed of the fold split")(
    "checkpoint-every", po::value(&o.checkpoint_every)->default_value(0),
    "checkpoint every N epochs (0: never)")(
    "validate-every", po::value(&o.validate_every)->default_value(o.validate_every),
    "validate each job on its held-out fold every N epochs and after the last (0: the last "
    "only)")("resume", po::bool_switch(&o.resume),
                                            "keep finished jobs in --out, continue the others")(
    "hosts", po::value(&hosts), "also run jobs on these hosts (pnn-node serve): h:p,...")(
    "no-local", po::bool_switch(&no_local), "jobs only on --hosts (and --hosts-file)")(
    "hosts-file", po::value(&hosts_file),
    "hosts that may join while the run goes on: one host:port per line, re-read as it runs")(
    "rejoin-interval", po::value(&o.rejoin_interval)->default_value(o.rejoin_interval),
    "seconds between looks for hosts to (re)join (lost ones, new lines in --hosts-file)")(
    "wait-for-hosts", po::value(&o.wait_for_hosts)->default_value(o.wait_for_hosts),
    "with every worker lost, seconds to wait for a host to (re)join before failing")(
    "connect-timeout", po::value(&o.connect_timeout)->default_value(o.connect_timeout),
    "seconds to wait for a host's workers")(
    "peer-timeout", po::value(&o.peer_timeout)->default_value(o.peer_timeout),
    "seconds of silence after which a host counts as lost (its jobs go elsewhere)")(
    "progress", po::value(&o.progress)->default_value(o.progress), "auto, plain or none");
  add_tls_flags(desc, o.tls);
  run_flags flags;
  add_run_flags(desc, flags);
  po::variables_map vm;
  if (!parse("kfold", "--models a,b --schedulers c,d --folds K --epochs E --out DIR [flags]", desc,
             argc, argv, vm))
    return 0;
  if (!hosts.empty())
    o.hosts = split_list(hosts, "--hosts");
  o.hosts_file = hosts_file;
  o.use_local = !no_local;
  o.out = required_out(out);
  o.models = split_list(models, "--models");
  o.schedulers = split_list(schedulers, "--schedulers");
  one_of(vm, "optimizers", "optimizer");
  one_of(vm, "lrs", "lr");
  one_of(vm, "batch-sizes", "batch-size");
  if (vm.count("optimizers"))
    o.optimizers = split_list(optimizers, "--optimizers");
  if (vm.count("lrs"))
    o.lrs = number_list<double>(lrs, "--lrs", "a learning rate",
                                [](const std::string& s, size_t* used) { return std::stod(s, used); });
  if (vm.count("batch-sizes"))
    o.batch_sizes = number_list<int64_t>(
      batch_sizes, "--batch-sizes", "a batch size",
      [](const std::string& s, size_t* used) { return static_cast<int64_t>(std::stoll(s, used)); });
  o.raise_threads_in_tail = vm.count("no-tail-threads") == 0;
  o.handle_interrupts = true;
  progress_line_check(o.progress);
  return run_with_report("kfold", vm, o, run_kfold_command, flags);
}

/// The dataset and model flags of hogwild and sgd (`per_host`: each host loads its
/// own copy of the dataset).
template <class Options>
void add_data_flags(po::options_description& desc, Options& o, bool per_host) {
  const std::string copy = per_host ? " (each host loads its own copy)" : "";
  const std::string where = per_host ? " on this host" : "";
  desc.add_options()("dataset", po::value(&o.dataset)->default_value(o.dataset),
                     ("fashion-mnist, mnist, cifar10, synthetic, synthetic-cifar" + copy).c_str())(
    "data-dir", po::value(&o.data_dir), ("folder of the dataset's files" + where).c_str())(
    "subset", po::value(&o.subset)->default_value(0), "use the first N training samples (0: all)")(
    "model", po::value(&o.model)->default_value(o.model), "model name (pnn-node models)");
}

/// The optimisation and output flags of hogwild and sgd (--out goes to `out`).
template <class Options>
void add_step_flags(po::options_description& desc, Options& o, std::string& out) {
  desc.add_options()("optimizer", po::value(&o.optimizer)->default_value(o.optimizer),
                     "adam, adamw or sgd (one per worker), with parameters: sgd:momentum=0.9")(
    "lr", po::value(&o.lr)->default_value(o.lr),
    "learning rate")("scheduler", po::value(&o.scheduler)->default_value(o.scheduler),
                     "none, cosine, warm, multistep, step, plateau (one per worker)")(
    "epochs", po::value(&o.epochs)->default_value(o.epochs),
    "epochs (one epoch: every worker once over its shard)")(
    "batch-size", po::value(&o.batch_size)->default_value(o.batch_size),
    "batch size per worker")("out", po::value(&out), "output folder (required)")(
    "threads-per-worker", po::value(&o.threads_per_worker)->default_value(o.threads_per_worker),
    "LibTorch intra-op threads per worker")("seed", po::value(&o.seed)->default_value(o.seed),
                                            "seed of initialisation and order")(
    "shard-seed", po::value(&o.shard_seed)->default_value(o.shard_seed), "seed of the shard split")(
    "test-batch-size", po::value(&o.test_batch_size)->default_value(o.test_batch_size),
    "batch size of the final test")("loss-window",
                                    po::value(&o.loss_window)->default_value(o.loss_window),
                                    "steps in the moving average of loss.csv");
}

int hogwild_command(int argc, const char* const* argv) {
  hogwild_options o;
  std::string out;
  po::options_description desc{"hogwild flags"};
  add_data_flags(desc, o, false);
  desc.add_options()(
    "workers", po::value(&o.workers)->default_value(0),
    "workers sharing the model, each on its own shard (0: one per core; 1: plain SGD)")(
    "balance", po::value(&o.balance)->default_value(o.balance),
    "dynamic: workers take batches from one shared queue; static: fixed shards")(
    "resume", po::bool_switch(&o.resume),
    "continue the run in --out that Ctrl-C stopped (same settings)");
  add_step_flags(desc, o, out);
  desc.add_options()("progress", po::value(&o.progress)->default_value(o.progress),
                     "auto, plain or none");
  run_flags flags;
  add_run_flags(desc, flags);
  po::variables_map vm;
  if (!parse("hogwild", "--dataset D --model M --workers N --epochs E --out DIR [flags]", desc,
             argc, argv, vm))
    return 0;
  o.out = required_out(out);
  progress_line_check(o.progress);
  o.handle_interrupts = true;
  return run_with_report("hogwild", vm, o, run_hogwild_command, flags);
}

int sgd_command(int argc, const char* const* argv) {
  sgd_options o;
  std::string out, hosts, holder_hosts;
  bool no_local = false;
  po::options_description desc{"sgd flags"};
  desc.add_options()("hosts", po::value(&hosts),
                     "workers on these hosts (pnn-node serve): h:p,...")(
    "no-local", po::bool_switch(&no_local), "workers only on --hosts")(
    "slots", po::value(&o.slots)->default_value(0), "workers on this host (0: one per core)");
  add_data_flags(desc, o, true);
  desc.add_options()("n-push", po::value(&o.n_push)->default_value(o.n_push),
                     "steps between a worker's pushes of its accumulated update")(
    "n-pull", po::value(&o.n_pull)->default_value(o.n_pull),
    "steps between a worker's pulls of the holder's parameters")(
    "local-after", po::value(&o.local_after)->default_value(o.local_after),
    "post-local SGD: push and pull every step for the first E epochs, then every --n-push / "
    "--n-pull steps")(
    "max-pushes", po::value(&o.max_pushes)->default_value(o.max_pushes),
    "unanswered pushes a worker may have before it waits")(
    "optimizer-on", po::value(&o.optimizer_on)->default_value(o.optimizer_on),
    "workers (each its own optimizer, pushing parameter deltas) or holder (workers push "
    "gradients, the holder runs the optimizer)")(
    "merge", po::value(&o.merge)->default_value(o.merge),
    "with the optimizer on the workers: average (the holder adds each delta divided by the W "
    "workers, whose learning rate is W x --lr) or sum (adds every delta as it is)")(
    "sync", po::bool_switch(&o.sync),
    "synchronous rounds: each worker pushes every --n-push steps and waits until all have "
    "pushed; the holder applies their mean (workers at W x --lr)")(
    "staleness-scaling", po::bool_switch(&o.staleness_scaling),
    "divide each update by its staleness (holder versions from other workers it missed)")(
    "max-staleness", po::value(&o.max_staleness)->default_value(o.max_staleness),
    "a worker whose push was more than S versions stale pulls before its next step (0: "
    "unbounded)")(
    "holder-timeout", po::value(&o.holder_timeout)->default_value(o.holder_timeout),
    "seconds a worker waits for the holder's answer before it fails")(
    "connect-timeout", po::value(&o.connect_timeout)->default_value(o.connect_timeout),
    "seconds to wait for a host's node to answer")(
    "peer-timeout", po::value(&o.peer_timeout)->default_value(o.peer_timeout),
    "seconds of silence after which a host counts as lost");
  add_step_flags(desc, o, out);
  desc.add_options()(
    "holder-checkpoint-every", po::value(&o.holder_checkpoint_every)->default_value(0),
    "save the holder's parameters to <out>/holder.pt every N updates and at the end (0: never)")(
    "holder-shards", po::value(&o.holder_shards)->default_value(o.holder_shards),
    "split the holder into S shard actors (byte-balanced; each its own version and "
    "<out>/holder.shard<i>.pt); workers push and pull every shard at once")(
    "compress", po::value(&o.compress)->default_value(o.compress),
    "pushes as none, fp16, bf16 (2 bytes a value) or topk:F (the fraction F largest in "
    "magnitude, with their indices); what is left out goes into the next push")(
    "holder-hosts", po::value(&holder_hosts),
    "run shard i on entry i mod H of this list: local (here) or h:p of a pnn-node serve "
    "(no workers there unless also in --hosts); its checkpoints come here")(
    "bulk-bind", po::value(&o.bulk_bind)->default_value(o.bulk_bind),
    "where workers on other hosts pull and push this process's shards beside CAF: auto "
    "(127.0.0.1 when --hosts are all loopback, else the address that reaches the first), "
    "an address, or off; never with --sync or --tls")(
    "resume", po::bool_switch(&o.resume),
    "start from <out>/holder.pt (holder.shard<i>.pt with --holder-shards) when it exists")(
    "progress", po::value(&o.progress)->default_value(o.progress), "auto, plain or none");
  add_tls_flags(desc, o.tls);
  run_flags flags;
  add_run_flags(desc, flags);
  po::variables_map vm;
  if (!parse("sgd",
             "--hosts h:p,... --dataset D --model M --n-push N --n-pull N --epochs E --out DIR "
             "[flags]",
             desc, argc, argv, vm))
    return 0;
  if (!hosts.empty())
    o.hosts = split_list(hosts, "--hosts");
  if (!holder_hosts.empty())
    o.holder_hosts = split_list(holder_hosts, "--holder-hosts");
  if (o.sync && vm["n-pull"].defaulted()) // a synchronous worker pulls after each push
    o.n_pull = o.n_push;
  o.use_local = !no_local;
  o.out = required_out(out);
  o.handle_interrupts = true;
  progress_line_check(o.progress);
  return run_with_report("sgd", vm, o, run_sgd_command, flags);
}

int serve_command(int argc, const char* const* argv) {
  serve_request r;
  int port = 0;
  std::string allowed_dirs;
  po::options_description desc{"serve flags"};
  desc.add_options()("port", po::value(&port)->default_value(0),
                     "TCP port to listen on (0: any free port, printed)")(
    "bind", po::value(&r.bind)->default_value(r.bind),
    "address to listen on (127.0.0.1 unless you say otherwise)")(
    "slots", po::value(&r.slots)->default_value(0), "jobs at once on this host (0: one per core)")(
    "data-dir", po::value(&r.data_dir), "this host's folder of dataset files")(
    "peer-timeout", po::value(&r.peer_timeout)->default_value(r.peer_timeout),
    "seconds of silence after which a coordinator counts as gone (its workers end)")(
    "max-dataset-cache-mb", po::value(&r.max_dataset_cache_mb)->default_value(r.max_dataset_cache_mb),
    "datasets kept loaded for coordinators' jobs, in MB (unused ones are dropped)")(
    "max-checkpoint-mb", po::value(&r.max_checkpoint_mb)->default_value(r.max_checkpoint_mb),
    "largest checkpoint a coordinator may send with a job, in MB")(
    "max-holder-mb", po::value(&r.max_holder_mb)->default_value(r.max_holder_mb),
    "parameter holder shards coordinators may run here (sgd --holder-hosts), values and "
    "optimizer moments together, in MB")(
    "max-workers", po::value(&r.max_workers)->default_value(0),
    "workers alive at once over all coordinators (0: 4 x slots)")(
    "allow-data-dir", po::value(&allowed_dirs),
    "folders a coordinator's --data-dir may name, comma-separated (none unless given)")(
    "metrics-port", po::value(&r.metrics_port)->default_value(0),
    "serve this node's metrics at http://BIND:P/metrics in Prometheus' text format (0: "
    "none)")(
    "bulk-bind", po::value(&r.bulk_bind)->default_value(r.bulk_bind),
    "where holder shards run here take pulls and pushes beside CAF: auto (the --bind "
    "address, any free port), an address, or off; none with TLS");
  add_tls_flags(desc, r.tls);
  po::variables_map vm;
  if (!parse("serve", "--port P [--bind ADDR] [--slots N] [--tls-cert F --tls-key F --tls-ca F]",
             desc, argc, argv, vm))
    return 0;
  if (port < 0 || port > 65535)
    bad("--port " + std::to_string(port) + ": expected 0..65535");
  r.port = static_cast<uint16_t>(port);
  if (!allowed_dirs.empty())
    r.allowed_data_dirs = split_list(allowed_dirs, "--allow-data-dir");
  metrics_port(r.metrics_port); // checked before anything starts
  r.dry_run = vm.count("dry-run") > 0;
  return run_serve(r);
}

int report_command(int argc, const char* const* argv) {
  report_request r;
  std::vector<std::string> dirs;
  std::vector<std::string> compare;
  po::options_description desc{"report flags"};
  desc.add_options()("dir", po::value(&dirs)->composing(),
                     "the run's output folder (the first argument; more: runs side by side)")(
    "compare", po::value(&compare)->composing(),
    "another run to compare with: for kfold a --serial run (speedup per model and "
    "scheduler), for hogwild/sgd other runs (loss, accuracy, samples/s); repeatable")(
    "gnuplot", po::value(&r.gnuplot)->default_value(r.gnuplot), "the gnuplot program");
  po::positional_options_description positional;
  positional.add("dir", -1);
  po::options_description all{desc};
  all.add_options()("help,h", "show this help");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    bad(error_text(e));
  }
  if (vm.count("help")) {
    std::cout << "usage: pnn-node report DIR [DIR2 ...] [--compare DIR3 ...]\n\n" << desc;
    return 0;
  }
  if (dirs.empty() || dirs.front().empty())
    bad("report: expected the run's folder: pnn-node report DIR");
  r.dir = dirs.front();
  r.runs.assign(dirs.begin() + 1, dirs.end());
  for (const auto& c : compare)
    for (const auto& item : split_list(c, "--compare"))
      r.compare.emplace_back(item);
  return run_report(r);
}

int models_command(int argc, const char* const* argv) {
  po::options_description desc{"models flags"};
  po::variables_map vm;
  if (!parse("models", "", desc, argc, argv, vm))
    return 0;
  return run_models();
}

int datasets_command(int argc, const char* const* argv) {
  std::string data_dir;
  po::options_description desc{"datasets flags"};
  desc.add_options()("data-dir", po::value(&data_dir), "also look for dataset files here");
  po::variables_map vm;
  if (!parse("datasets", "[--data-dir DIR]", desc, argc, argv, vm))
    return 0;
  return run_datasets(data_dir);
}

} // namespace

namespace {

std::vector<std::string>& command_line() {
  static std::vector<std::string> args;
  return args;
}

std::string shell_quoted(const std::string& arg) {
  if (!arg.empty()
      && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                               "-_./:=,+@%")
        == std::string::npos)
    return arg;
  std::string q = "'";
  for (char c : arg)
    q += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
  return q + "'";
}

} // namespace

std::string continue_command() {
  const auto& args = command_line();
  std::string cmd;
  bool resume = false;
  for (const auto& a : args) {
    cmd += (cmd.empty() ? "" : " ") + shell_quoted(a);
    resume = resume || a == "--resume";
  }
  return cmd.empty() || resume ? cmd : cmd + " --resume";
}

int report_interrupted(const char* verb, const std::string& what_finished,
                       const std::string& saved) {
  std::fprintf(stderr, "pnn-node %s: interrupted: %s; %s. Continue with:\n  %s\n", verb,
               what_finished.c_str(), saved.c_str(), continue_command().c_str());
  return interrupted_exit_code;
}

int parse_program_flags(const std::string& program, const std::string& synopsis,
                        const std::string& description, const po::options_description& flags,
                        int argc, const char* const* argv) {
  po::options_description all{flags};
  all.add_options()("help,h", "show this help");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).run(), vm);
    if (vm.count("help")) {
      std::ostringstream help;
      help << "usage: " << program << " " << synopsis << "\n\n"
           << description << (description.empty() ? "" : "\n\n") << all;
      std::string text = help.str();
      std::cout << text << (text.back() == '\n' ? "" : "\n");
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << program << ": " << error_text(e) << " (" << program << " --help)\n";
    return 2;
  }
  return -1;
}

int run_cli(int argc, const char* const* argv) {
  command_line().assign(argv, argv + argc);
  if (argc < 2) {
    std::cerr << usage;
    return 2;
  }
  const std::string verb = argv[1];
  if (verb == "-h" || verb == "--help" || verb == "help") {
    std::cout << usage;
    return 0;
  }
  static const std::map<std::string, std::function<int(int, const char* const*)>> commands{
    {"kfold", kfold_command},   {"train", train_command},      {"hogwild", hogwild_command},
    {"serve", serve_command},   {"sgd", sgd_command},          {"report", report_command},
    {"models", models_command}, {"datasets", datasets_command}};
  try {
    auto i = commands.find(verb);
    if (i == commands.end())
      bad("unknown command '" + verb
          + "': expected kfold, train, hogwild, sgd, serve, report, models or datasets (pnn-node "
            "--help)");
    return i->second(argc - 1, argv + 1);
  } catch (const pnn::error& e) {
    std::cerr << "pnn-node " << verb << ": " << e.what() << "\n";
    return is_input_error(e.code()) ? 2 : 1;
  } catch (const std::exception& e) {
    // LibTorch errors carry a multi-line backtrace: keep the first line.
    std::string msg = e.what();
    auto nl = msg.find('\n');
    std::cerr << "pnn-node " << verb << ": failed: " << msg.substr(0, nl) << "\n";
    return 1;
  }
}

} // namespace pnn::runtime
