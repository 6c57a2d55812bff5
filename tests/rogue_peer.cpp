// `pnn-tests --rogue-peer HOST:PORT`: a process that reaches a published parameter
// holder through CAF's network layer and, once training has begun (the holder has
// applied an update), sends it updates no honest worker sends: one value too many,
// a NaN, another model's layout. It prints one line per answer for the test that
// started it ("rejected: ..." or "applied: ...").
#include <pnn/actors/node.hpp>
#include <pnn/actors/parameter_holder.hpp>
#include <pnn/actors/protocol.hpp>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <thread>

#include <sys/types.h>

namespace pnn::test {

namespace {

/// An actor system with the network layer, for a helper process.
struct peer_system {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  peer_system() {
    configure_actor_system(cfg, 1);
    cfg.load<caf::io::middleman>();
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

/// Connects to the holder published at `address` and prints "connected" (the test
/// waits for that line), or prints the error and returns an invalid handle.
holder_actor connect_holder(caf::actor_system& sys, const std::string& address,
                            const std::string& flag) {
  auto [host, port] = parse_host_port(address, flag);
  auto holder = sys.middleman().remote_actor<holder_actor>(host, port);
  if (!holder) {
    std::printf("error: cannot connect: %s\n", sys.render(holder.error()).c_str());
    return {};
  }
  std::printf("connected\n");
  std::fflush(stdout);
  return *holder;
}

} // namespace

int rogue_peer_main(const std::string& address) {
  peer_system peer;
  auto& sys = *peer.sys;
  auto holder = connect_holder(sys, address, "--rogue-peer");
  if (!holder)
    return 1;
  caf::scoped_actor self{sys};
  const auto timeout = std::chrono::seconds(30);
  // Wait for the first applied update: the workers are training.
  holder_status st;
  for (int i = 0; i < 6000 && st.version == 0; ++i) {
    self->request(holder, timeout, status_atom::value)
      .receive([&](holder_status& s) { st = s; }, [&](caf::error&) {});
    if (st.version == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  param_blob current;
  self->request(holder, timeout, pull_atom::value)
    .receive([&](param_blob& b) { current = std::move(b); }, [&](caf::error&) {});
  std::vector<param_blob> updates;
  {
    param_blob b = current; // one value too many
    b.count += 1;
    b.bytes.resize(b.bytes.size() + sizeof(float), 0);
    updates.push_back(std::move(b));
  }
  {
    param_blob b = current; // the right shape with a NaN
    std::fill(b.bytes.begin(), b.bytes.end(), 0);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.bytes.data() + sizeof(float) * (b.count / 2), &nan, sizeof nan);
    updates.push_back(std::move(b));
  }
  {
    param_blob b = current; // another model's layout
    std::fill(b.bytes.begin(), b.bytes.end(), 0);
    b.layout ^= 1;
    updates.push_back(std::move(b));
  }
  for (auto& u : updates)
    self->request(holder, timeout, push_atom::value, u)
      .receive(
        [&](uint64_t v) {
          std::printf("applied: version %llu\n", static_cast<unsigned long long>(v));
        },
        [&](caf::error& e) { std::printf("rejected: %s\n", sys.render(e).c_str()); });
  std::printf("done (holder version %llu when the updates were sent)\n",
              static_cast<unsigned long long>(st.version));
  std::fflush(stdout);
  return 0;
}

int kill_at_version_main(const std::string& address, uint64_t version, pid_t victim) {
  peer_system peer;
  auto& sys = *peer.sys;
  auto holder = connect_holder(sys, address, "--kill-at-version");
  if (!holder)
    return 1;
  caf::scoped_actor self{sys};
  holder_status st;
  bool gone = false;
  for (int i = 0; i < 60000 && st.version < version && !gone; ++i) {
    self->request(holder, std::chrono::seconds(30), status_atom::value)
      .receive([&](holder_status& s) { st = s; }, [&](caf::error&) { gone = true; });
    if (st.version < version)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (gone || st.version < version) {
    std::printf("error: the holder ended at version %llu\n",
                static_cast<unsigned long long>(st.version));
    return 1;
  }
  ::kill(victim, SIGKILL);
  std::printf("killed %d at version %llu\n", static_cast<int>(victim),
              static_cast<unsigned long long>(st.version));
  std::fflush(stdout);
  return 0;
}

} // namespace pnn::test
