#pragma once

// The parameter holder's data path beside CAF's network layer. CAF 0.17 moves a
// message between hosts through one I/O thread per process (the middleman), four
// thread hand-offs and about six passes over its bytes (measured: 0.58 ms for an
// empty pull + push on loopback, 1.1 GB/s for VGG11's 37 MB). A bulk port moves a
// shard's parameters and updates between two plain TCP sockets: the sender writes
// straight from the holder's buffer, the receiver reads straight into its own, and
// each connection is served by its own thread. Only pulls and pushes of
// asynchronous runs travel here; everything else (spawning, monitoring, failover,
// synchronous rounds, checkpoints) stays on CAF.
//
// Who may connect: a port serves a shard only to a client that presents the
// shard's token, 16 random bytes the coordinator hands to its workers inside their
// sgd_link (over CAF, so over TLS with --tls). The bytes themselves travel in
// plain TCP, so pnn does not use bulk ports with --tls.

#include <pnn/actors/protocol.hpp>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace pnn {

/// What a bulk port serves for one holder shard (parameter_holder.cpp has the
/// holder's). Called from the port's connection threads, each at any time.
class bulk_shard {
public:
  virtual ~bulk_shard() = default;
  /// The current parameters (version, layout, count float32 values) as a snapshot
  /// that later changes leave alone (shared by the pulls of one version), counted as
  /// a pull. The port sends it outside the shard's lock.
  virtual std::shared_ptr<const param_blob> pull() = 0;
  /// Applies an update as the holder's push handler does. A refusal is an error of
  /// pnn's category (error_code::invalid_argument) with the reason.
  /// `values_max_abs` >= 0: `update.bytes` are finite values of at most that
  /// magnitude (checked as they arrived, while the rest was still on its way).
  virtual caf::expected<push_ack> push(const param_update& update, float values_max_abs) = 0;

  /// A push of raw deltas summed as it arrives, outside the shard's lock: the port
  /// writes out = base + scale * delta a chunk at a time while the rest is on its
  /// way, and the shard takes `out` as its next version if nothing changed `base`
  /// meanwhile.
  struct sum {
    std::shared_ptr<const param_blob> base; ///< the parameters the sum starts from
    std::shared_ptr<param_blob> out;        ///< as large as base; the sum goes here
    float scale = 1;                        ///< the delta's factor
  };
  /// Whether `update` (all but its values arrived) can be summed so, and then
  /// `into` set up for it. No (the default): push() it whole.
  virtual bool begin_sum(const param_update& update, sum& into) {
    (void)update;
    (void)into;
    return false;
  }
  /// The end of a begun sum: `update` arrived whole, its values finite of at most
  /// `values_max_abs` (negative: one is not, or not known), and `done` holds the
  /// sums, of at most `sum_max_abs` (negative: one is not finite, or not all were
  /// made). Answers as push() does; when the sum cannot be taken (another push came
  /// first, or a sum is not finite) the update goes through push().
  virtual caf::expected<push_ack> end_sum(sum done, const param_update& update,
                                          float values_max_abs, float sum_max_abs) {
    (void)done;
    (void)sum_max_abs;
    return push(update, values_max_abs);
  }
  /// The shard's layout and number of values (fixed for its life).
  virtual uint64_t layout() const = 0;
  virtual uint64_t count() const = 0;
};

/// A listening TCP port that serves registered shards, a thread per connection: at
/// most half the process's file descriptors, of which at most 64 that have not
/// presented a token yet (more wait in the listen queue); a client that does not
/// present one within 10 s, or sends a frame it does not finish within 60 s, is cut
/// off.
class bulk_server {
public:
  /// Listens on `bind` (an IPv4 or IPv6 address or a name), port `port` (0: any).
  /// Throws pnn::error naming the address when it cannot.
  explicit bulk_server(const std::string& bind = "127.0.0.1", uint16_t port = 0);
  /// Stops listening, ends every connection and waits for their threads.
  ~bulk_server();
  bulk_server(const bulk_server&) = delete;
  bulk_server& operator=(const bulk_server&) = delete;

  uint16_t port() const {
    return port_;
  }
  /// Serves `shard` to clients that present the returned token (32 hex digits),
  /// until remove() or until the shard is gone.
  std::string add(std::weak_ptr<bulk_shard> shard);
  void remove(const std::string& token);
  /// Connections open now (for tests).
  size_t connections() const;

private:
  struct connection;
  void accept_loop();
  void serve(connection& c);
  std::shared_ptr<bulk_shard> hello(int fd);
  std::shared_ptr<bulk_shard> find(const std::string& token) const;

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  mutable std::mutex mtx_;
  bool stopping_ = false;
  std::vector<std::pair<std::string, std::weak_ptr<bulk_shard>>> shards_;
  std::vector<std::unique_ptr<connection>> connections_;
  std::thread acceptor_;
};

/// The address of this machine that traffic to `host` leaves from (no packet is
/// sent); "" when `host` does not resolve or has no route.
std::string local_address_towards(const std::string& host);

/// One client connection to a shard on a bulk port: blocking calls, each whole
/// within the timeout (open's, or set_timeout's). A failure of the connection
/// (refused, reset, no answer in time) is an error of CAF's category
/// (caf::sec::runtime_error, said in its context); after it the connection is
/// closed and every call fails.
class bulk_connection {
public:
  /// Connects to `endpoint` and presents its token, within `timeout` seconds (also
  /// each later call's). Fails when the port cannot be reached or does not know the
  /// token.
  static caf::expected<std::unique_ptr<bulk_connection>> open(const bulk_endpoint& endpoint,
                                                              double timeout);
  ~bulk_connection();
  bulk_connection(const bulk_connection&) = delete;
  bulk_connection& operator=(const bulk_connection&) = delete;

  /// The shard's parameters into `out` (its buffer reused when it has the size).
  caf::error pull(param_blob& out);
  /// Sends `update`; its answer, or the shard's refusal (pnn's category).
  caf::expected<push_ack> push(const param_update& update);
  /// pull() and push() in halves, so that requests to several shards are all on
  /// their way before the first answer is read. Each send is answered in order.
  caf::error send_pull();
  caf::error receive_pull(param_blob& out);
  caf::error send_push(const param_update& update);
  caf::expected<push_ack> receive_push();

  uint64_t layout() const {
    return layout_;
  }
  uint64_t count() const {
    return count_;
  }
  /// Each later call must be whole within `seconds`.
  void set_timeout(double seconds);

private:
  bulk_connection() = default;
  caf::error fail(const std::string& what);

  int fd_ = -1;
  std::string where_; ///< host:port, for errors
  uint64_t layout_ = 0;
  uint64_t count_ = 0;
  double timeout_ = 30;
};

} // namespace pnn
