#pragma once

// Publishing an actor on a port and reaching one on another host, over plain TCP or,
// when the actor system loaded CAF's OpenSSL module (configure_network with TLS
// files), over TLS with mutual authentication. Every pnn connection goes through
// these two, so a TLS node never accepts or makes a plain connection.

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/io/middleman.hpp>
#include <caf/local_actor.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/openssl/remote_actor.hpp>

#include <cstdint>
#include <string>

namespace pnn {

/// Whether the message `self` is handling comes from an actor of this process (not
/// from a peer, and not sent anonymously). Control messages (add a worker, run,
/// cancel; a collector's results and assignments) are taken only from here.
inline bool sent_from_this_process(caf::local_actor* self) {
  const auto& sender = self->current_sender();
  return sender && sender->node() == self->node();
}

/// Publishes `handle` on `bind`:`port` (0: the OS picks); the port it listens on.
template <class Handle>
caf::expected<uint16_t> publish_actor(caf::actor_system& sys, const Handle& handle, uint16_t port,
                                      const std::string& bind) {
  if (sys.has_openssl_manager())
    return caf::openssl::publish(handle, port, bind.c_str(), true);
  return sys.middleman().publish(handle, port, bind.c_str(), true);
}

/// The actor published at `host`:`port`, with the interface `Handle`.
template <class Handle>
caf::expected<Handle> connect_actor(caf::actor_system& sys, const std::string& host,
                                    uint16_t port) {
  if (sys.has_openssl_manager())
    return caf::openssl::remote_actor<Handle>(sys, host, port);
  return sys.middleman().remote_actor<Handle>(host, port);
}

} // namespace pnn
