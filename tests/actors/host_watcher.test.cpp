// The host watcher on a real actor system (it runs on its own thread): it looks for
// the wanted hosts at once and then every interval, says once that a host cannot be
// reached, keeps trying, and answers done with the hosts that joined.
#define CAF_SUITE actors.host_watcher
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/actors/fold_dispatcher.hpp>
#include <pnn/actors/host_watcher.hpp>

#include <caf/all.hpp>

#include <atomic>
#include <mutex>
#include <thread>

using namespace pnn;

CAF_TEST(an unreachable host is reported once and tried again every interval) {
  caf::actor_system_config cfg;
  configure_actor_system(cfg, 2); // no network layer: connecting fails at once
  caf::actor_system sys{cfg};
  {
    Cluster cluster{sys, 1, "--hosts"};
    auto dispatcher = spawn_dispatcher(sys, {}, {});
    auto looks = std::make_shared<std::atomic<int>>(0);
    auto lines = std::make_shared<std::vector<std::string>>();
    auto mtx = std::make_shared<std::mutex>();
    host_watcher_options o;
    o.wanted = [looks] {
      ++*looks;
      return std::vector<wanted_host>{{"127.0.0.1:9", "--hosts-file h.txt"}};
    };
    o.interval = 0.05;
    o.log = [lines, mtx](const std::string& what) {
      std::lock_guard<std::mutex> guard{*mtx};
      lines->push_back(what);
    };
    auto watcher = spawn_host_watcher(sys, cluster, dispatcher, {}, o);
    test::wait_until([&] { return *looks >= 4; }, 2);
    CAF_CHECK_GREATER_OR_EQUAL(looks->load(), 4); // the first look at once, then every 50 ms
    std::vector<host_join> joined{{"x", 0, 0}};
    caf::scoped_actor self{sys};
    self->request(watcher, std::chrono::seconds(10), done_atom::value)
      .receive([&](std::vector<host_join>& j) { joined = std::move(j); },
               [&](caf::error& e) { CAF_FAIL("no answer: " << sys.render(e)); });
    CAF_CHECK(joined.empty());
    std::lock_guard<std::mutex> guard{*mtx};
    CAF_REQUIRE_EQUAL(lines->size(), 1u); // said once, not once per look
    CAF_MESSAGE(lines->front());
    CAF_CHECK(test::contains(lines->front(), "--hosts-file h.txt 127.0.0.1:9"));
    CAF_CHECK(test::contains(lines->front(), "retrying every 0.05 s"));
    caf::anon_send_exit(dispatcher, caf::exit_reason::user_shutdown);
  }
}
