#pragma once

#include <caf/actor_addr.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include <vector>

namespace pnn {

/// Ends the actors added to it when it goes out of scope (or on stop()). Actors that
/// hold each other's handles (a dispatcher and its workers, a sink and its sources)
/// never end on their own, and an actor system waits for every actor before it
/// shuts down: a group declared after the actor system ends them first.
///
///   caf::actor_system sys{cfg};
///   pnn::actor_group actors;
///   auto collector = actors.add(pnn::spawn_collector(sys, co));
class actor_group {
public:
  actor_group() = default;
  ~actor_group() {
    stop();
  }
  actor_group(const actor_group&) = delete;
  actor_group& operator=(const actor_group&) = delete;

  /// Adds `handle` (any actor handle) and returns it.
  template <class Handle>
  Handle add(Handle handle) {
    members_.push_back(handle.address());
    return handle;
  }

  /// Ends every actor added so far (user_shutdown), newest first.
  void stop() {
    for (auto i = members_.rbegin(); i != members_.rend(); ++i)
      caf::anon_send_exit(*i, caf::exit_reason::user_shutdown);
    members_.clear();
  }

private:
  std::vector<caf::actor_addr> members_;
};

} // namespace pnn
