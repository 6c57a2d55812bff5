// Many hosts on one machine: `pnn-node serve` processes on 127.0.0.1 and a
// coordinator `pnn-node kfold --hosts ...`, all real processes talking through
// CAF's network layer.
#include <torch/torch.h>

#define CAF_SUITE runtime.cluster
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <set>

using namespace pnn;

namespace {

const std::string node = PNN_NODE_PATH;

/// A `pnn-node serve` on 127.0.0.1 with a port chosen by the OS.
struct server {
  test::background_process process;
  std::string line;
  int port = 0;

  explicit server(int slots)
    : process(node + " serve --port 0 --slots " + std::to_string(slots)) {
    line = process.read_line();
    auto at = line.find("127.0.0.1:");
    if (at != std::string::npos)
      port = std::stoi(line.substr(at + 10));
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(port);
  }
};

const std::string kfold_run = "kfold --dataset synthetic:train=160,test=10 --models lenet5 "
                              "--schedulers cosine,warm --folds 2 --epochs 1 --progress plain";

} // namespace

CAF_TEST(a K-fold runs every job once on two serve processes) {
  test::temp_dir dir;
  server a{1}, b{1};
  CAF_REQUIRE_GREATER(a.port, 0);
  CAF_REQUIRE_GREATER(b.port, 0);
  CAF_MESSAGE(a.line);
  auto r = test::run_command(node + " " + kfold_run + " --hosts " + a.address() + ","
                             + b.address() + " --no-local --out " + (dir / "run").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto s = nlohmann::json::parse(test::read_text(dir / "run" / "summary.json"));
  CAF_REQUIRE_EQUAL(s["jobs"].size(), 4u);
  std::set<std::string> jobs, hosts;
  for (const auto& j : s["jobs"]) {
    CAF_CHECK(j["ok"].get<bool>());
    jobs.insert(j["scheduler"].get<std::string>() + "/" + std::to_string(j["fold"].get<int>()));
    hosts.insert(j["host"].get<std::string>());
    // The record files came back to the coordinator's folder.
    auto job_dir = dir / "run" / "lenet5" / j["scheduler"].get<std::string>()
                   / ("fold" + std::to_string(j["fold"].get<int>()));
    for (const char* f : {"steps.csv", "epochs.csv", "metrics.json", "confusion.csv", "result.json"})
      CAF_CHECK(std::filesystem::exists(job_dir / f));
  }
  CAF_CHECK_EQUAL(jobs.size(), 4u);
  // Both hosts ran jobs, and no job ran on the coordinator.
  CAF_CHECK_EQUAL(hosts.size(), 2u);
  bool a_seen = false, b_seen = false;
  for (const auto& h : hosts) {
    a_seen = a_seen || test::contains(h, ":" + std::to_string(a.port));
    b_seen = b_seen || test::contains(h, ":" + std::to_string(b.port));
  }
  CAF_CHECK(a_seen && b_seen);
  CAF_CHECK_EQUAL(s["local_slots"].get<int>(), 0);
  CAF_CHECK_EQUAL(s["slots"].get<int>(), 2);
  // A served node stops cleanly on SIGTERM.
  int status = a.process.stop(SIGTERM);
  CAF_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

CAF_TEST(local slots and a remote host share one queue) {
  test::temp_dir dir;
  server a{1};
  CAF_REQUIRE_GREATER(a.port, 0);
  auto r = test::run_command(node + " " + kfold_run + " --slots 1 --hosts " + a.address()
                             + " --out " + (dir / "run").string());
  CAF_REQUIRE_EQUAL(r.exit_code, 0);
  auto s = nlohmann::json::parse(test::read_text(dir / "run" / "summary.json"));
  std::map<std::string, int> per_host;
  for (const auto& j : s["jobs"])
    ++per_host[j["host"].get<std::string>()];
  CAF_CHECK_EQUAL(s["jobs"].size(), 4u);
  CAF_CHECK_EQUAL(per_host.size(), 2u);
  CAF_CHECK_EQUAL(per_host.count("local"), 1u);
}

CAF_TEST(unreachable hosts and bad serve flags are one line with exit code 2) {
  test::temp_dir dir;
  // A port nobody listens on: take one from a server, then stop it.
  int closed = 0;
  {
    server gone{1};
    closed = gone.port;
  }
  CAF_REQUIRE_GREATER(closed, 0);
  auto r = test::run_command(node + " " + kfold_run + " --no-local --hosts 127.0.0.1:"
                             + std::to_string(closed) + " --out " + (dir / "x").string());
  CAF_CHECK_EQUAL(r.exit_code, 2);
  CAF_CHECK(test::contains(r.err, "--hosts 127.0.0.1:" + std::to_string(closed)));
  CAF_CHECK_EQUAL(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  for (const char* args : {"kfold --dataset synthetic --no-local --out x",
                           "kfold --dataset synthetic --hosts nohost --out x",
                           "kfold --dataset synthetic --hosts 127.0.0.1:99999 --out x",
                           "serve --port 70000", "serve --slots -1"}) {
    auto e = test::run_command(node + " " + args);
    CAF_CHECK_EQUAL(e.exit_code, 2);
    CAF_CHECK_EQUAL(std::count(e.err.begin(), e.err.end(), '\n'), 1);
    if (e.exit_code != 2)
      CAF_MESSAGE(args << ": " << e.err);
  }
}
