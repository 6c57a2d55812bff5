#include <pnn/actors/bulk_wire.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/error.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/message.hpp>
#include <caf/sec.hpp>

#include <algorithm>
#include <cstddef>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

namespace pnn {

// The frames, in the host's byte order (pnn's float bytes are little-endian
// already; both ends are the same build):
//   hello     client: "PNNB", u32 version, 32 token characters
//             server: u32 status (0 ok, 1 unknown token), u64 layout, u64 count
//   pull      client: u32 op 1
//             server: u32 0, u64 version, u64 layout, u64 count, count float32
//   push      client: u32 op 2, push_head, bytes, squares, indices
//             server: u32 0, u64 version, u64 staleness
//                  or u32 1, u32 length, the refusal's text
namespace {

constexpr char magic[4] = {'P', 'N', 'N', 'B'};
constexpr uint32_t wire_version = 1;
constexpr uint32_t op_pull = 1;
constexpr uint32_t op_push = 2;
constexpr size_t token_chars = 32;
constexpr size_t max_refusal = 4096;
/// Connections that have not presented a token yet: more wait to be accepted.
constexpr size_t max_unknown = 64;
constexpr double hello_seconds = 10; ///< to present a token, whole
constexpr double frame_seconds = 60; ///< for a frame once begun, whole
constexpr double step_seconds = 2;   ///< one recv or send (the deadlines are checked between)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the bulk port's frames (and pnn's float bytes) are little-endian"
#endif

struct push_head {
  uint64_t seen;
  uint64_t layout;
  uint64_t count;
  double lr;
  int32_t steps;
  uint8_t gradient;
  uint8_t encoding;
  uint16_t unused;
  uint64_t bytes;
  uint64_t squares;
  uint64_t indices;
};

struct pull_head {
  uint32_t status;
  uint32_t unused;
  uint64_t version;
  uint64_t layout;
  uint64_t count;
};

struct welcome_frame {
  uint32_t status;
  uint32_t unused;
  uint64_t layout;
  uint64_t count;
};

struct ack_frame {
  uint32_t status;
  uint32_t unused;
  uint64_t version;
  uint64_t staleness;
};

// Both ends are the same build, but a compiler's padding must not change a frame.
static_assert(sizeof(push_head) == 64 && offsetof(push_head, bytes) == 40);
static_assert(sizeof(pull_head) == 32 && sizeof(welcome_frame) == 24 && sizeof(ack_frame) == 24);

using clock_type = std::chrono::steady_clock;
constexpr auto no_deadline = clock_type::time_point::max();

clock_type::time_point after(double seconds) {
  return clock_type::now()
    + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

/// Whether a call that timed out is tried again until `deadline`.
bool retry_until(clock_type::time_point deadline) {
  return deadline != no_deadline;
}

/// Past `deadline`: as a timeout (errno EAGAIN).
bool overdue(clock_type::time_point deadline) {
  if (deadline == no_deadline || clock_type::now() <= deadline)
    return false;
  errno = EAGAIN;
  return true;
}

/// Writes every byte of `parts` (resuming after partial writes); false on a
/// failure (errno says which; EAGAIN: the send timeout passed).
bool write_all(int fd, iovec* parts, size_t n, clock_type::time_point deadline = no_deadline) {
  while (n > 0) {
    if (overdue(deadline))
      return false;
    msghdr m{};
    m.msg_iov = parts;
    m.msg_iovlen = n;
    const auto sent = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (sent < 0) {
      // A call's timeout is a step: the frame's deadline decides (checked above).
      if (errno == EINTR || (retry_until(deadline) && (errno == EAGAIN || errno == EWOULDBLOCK)))
        continue;
      return false;
    }
    auto left = static_cast<size_t>(sent);
    while (n > 0 && left >= parts->iov_len) {
      left -= parts->iov_len;
      ++parts;
      --n;
    }
    if (n > 0) {
      parts->iov_base = static_cast<char*>(parts->iov_base) + left;
      parts->iov_len -= left;
    }
  }
  return true;
}

bool write_all(int fd, const void* data, size_t size,
               clock_type::time_point deadline = no_deadline) {
  iovec part{const_cast<void*>(data), size};
  return write_all(fd, &part, 1, deadline);
}

/// Reads exactly `size` bytes by `deadline`; false on a failure, the peer's end
/// (errno 0) or the deadline (errno EAGAIN).
bool read_all(int fd, void* data, size_t size, clock_type::time_point deadline = no_deadline) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    if (overdue(deadline))
      return false;
    const auto got = ::recv(fd, p, size, 0);
    if (got == 0) {
      errno = 0;
      return false;
    }
    if (got < 0) {
      if (errno == EINTR || (retry_until(deadline) && (errno == EAGAIN || errno == EWOULDBLOCK)))
        continue;
      return false;
    }
    p += got;
    size -= static_cast<size_t>(got);
  }
  return true;
}

void set_timeouts(int fd, double seconds) {
  timeval tv{};
  const auto us = static_cast<int64_t>(std::max(0.001, seconds) * 1e6);
  tv.tv_sec = static_cast<time_t>(us / 1000000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void no_delay(int fd) {
  const int yes = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
}

std::string new_token() {
  static std::mutex mtx;
  static std::random_device source;
  std::lock_guard<std::mutex> guard{mtx};
  std::string token;
  for (int i = 0; i < 4; ++i) {
    char part[9];
    std::snprintf(part, sizeof part, "%08x", static_cast<unsigned>(source()));
    token += part;
  }
  return token;
}

/// Equal tokens, in a time that does not depend on where they differ.
bool same_token(const std::string& a, const std::string& b) {
  if (a.size() != b.size())
    return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string socket_error() {
  if (errno == 0)
    return "the connection was closed";
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    return "no answer in time";
  return std::strerror(errno);
}

} // namespace

// -- server --------------------------------------------------------------------

struct bulk_server::connection {
  int fd = -1;
  std::thread thread;
  std::atomic<bool> known{false}; ///< it presented a token
  std::atomic<bool> done{false};
};

bulk_server::bulk_server(const std::string& bind, uint16_t port) {
  const auto where = bind + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (::getaddrinfo(bind.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found)
    throw pnn::error(error_code::invalid_argument,
                     "bulk port: cannot resolve " + where + " (expected an address)");
  std::string why;
  for (auto* a = found; a && listen_fd_ < 0; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0)
      continue;
    const int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      sockaddr_storage sa{};
      socklen_t len = sizeof sa;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
      port_ = ntohs(sa.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&sa)->sin_port);
    } else {
      why = std::strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0)
    throw pnn::error(error_code::invalid_argument,
                     "bulk port: cannot listen on " + where + " (" + why + ")");
  acceptor_ = std::thread([this] { accept_loop(); });
}

bulk_server::~bulk_server() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
    for (auto& c : connections_)
      ::shutdown(c->fd, SHUT_RDWR); // wakes its thread's recv
  }
  ::shutdown(listen_fd_, SHUT_RDWR); // wakes accept
  if (acceptor_.joinable())
    acceptor_.join();
  ::close(listen_fd_);
  for (auto& c : connections_) {
    if (c->thread.joinable())
      c->thread.join();
    ::close(c->fd);
  }
}

std::string bulk_server::add(std::weak_ptr<bulk_shard> shard) {
  auto token = new_token();
  std::lock_guard<std::mutex> guard{mtx_};
  shards_.emplace_back(token, std::move(shard));
  return token;
}

void bulk_server::remove(const std::string& token) {
  std::lock_guard<std::mutex> guard{mtx_};
  shards_.erase(std::remove_if(shards_.begin(), shards_.end(),
                               [&](const auto& s) { return s.first == token; }),
                shards_.end());
}

size_t bulk_server::connections() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return static_cast<size_t>(std::count_if(connections_.begin(), connections_.end(),
                                           [](const auto& c) { return !c->done; }));
}

std::shared_ptr<bulk_shard> bulk_server::find(const std::string& token) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::shared_ptr<bulk_shard> match;
  for (const auto& [t, shard] : shards_)
    if (same_token(t, token))
      match = shard.lock();
  return match;
}

void bulk_server::accept_loop() {
  // Connections at once: what the process's descriptors allow, half of them (the
  // rest are CAF's, checkpoints', datasets'); of them at most max_unknown that have
  // not presented a token. Beyond either, new ones wait in the listen queue.
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  const size_t cap = std::max<size_t>(16, static_cast<size_t>(files.rlim_cur) / 2);
  for (;;) {
    bool full = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_)
        return;
      // Ended connections go (their threads have returned).
      for (auto it = connections_.begin(); it != connections_.end();) {
        if ((*it)->done) {
          (*it)->thread.join();
          ::close((*it)->fd);
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
      const auto unknown = static_cast<size_t>(std::count_if(
        connections_.begin(), connections_.end(), [](const auto& c) { return !c->known; }));
      full = connections_.size() >= cap || unknown >= max_unknown;
    }
    if (full) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    bool pause = false;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_) {
        if (fd >= 0)
          ::close(fd);
        return;
      }
      if (fd < 0) {
        if (errno != EINTR && errno != ECONNABORTED && errno != EMFILE && errno != ENFILE
            && errno != ENOBUFS && errno != ENOMEM)
          return;
        pause = errno != EINTR && errno != ECONNABORTED;
      } else {
        auto c = std::make_unique<connection>();
        c->fd = fd;
        auto* raw = c.get();
        try {
          raw->thread = std::thread([this, raw] {
            serve(*raw);
            ::shutdown(raw->fd, SHUT_RDWR);
            raw->done = true;
          });
          connections_.push_back(std::move(c));
        } catch (const std::exception&) { // no thread to be had: refused
          ::close(fd);
          pause = true;
        }
      }
    }
    if (pause)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

namespace {

/// A pull: the shard's snapshot of its version, written outside its lock.
bool serve_pull(int fd, std::shared_ptr<bulk_shard> shard, clock_type::time_point deadline) {
  const auto p = shard->pull();
  shard.reset();
  pull_head head{0, 0, p->version, p->layout, p->count};
  iovec parts[2] = {{&head, sizeof head}, {const_cast<char*>(p->bytes.data()), p->bytes.size()}};
  return write_all(fd, parts, 2, deadline);
}

/// A push into `update` (its buffers reused), applied, answered. False: the
/// connection ends (it failed, or sent sizes that do not fit the shard).
bool serve_push(int fd, std::shared_ptr<bulk_shard> shard, param_update& update,
                clock_type::time_point deadline) {
  push_head head{};
  if (!read_all(fd, &head, sizeof head, deadline))
    return false;
  // What each array can be for this shard: values (float32, or 2 bytes each with
  // fp16/bf16, or fewer with top-k), squares as many as the values or none,
  // indices (uint32) only with top-k.
  const uint64_t raw = shard->count() * sizeof(float);
  const bool fits = head.bytes <= raw && (head.squares == 0 || head.squares == head.bytes)
    && (head.indices == 0 || (head.encoding == 3 && head.indices <= raw));
  if (!fits) {
    std::fprintf(stderr, "pnn: bulk port: a push whose sizes do not fit the shard; "
                         "connection closed\n");
    return false;
  }
  update.seen = head.seen;
  update.layout = head.layout;
  update.count = head.count;
  update.lr = head.lr;
  update.steps = head.steps;
  update.gradient = head.gradient != 0;
  update.encoding = head.encoding;
  update.bytes.resize(head.bytes);
  update.squares.resize(head.squares);
  update.indices.resize(head.indices);
  // Raw values are checked a chunk at a time as they arrive (the holder then need
  // not) and, where the shard lets, added to its parameters into a new buffer in
  // the same pass: the check and the sum overlap the transfer of the rest.
  const bool plain = head.encoding == 0 && head.bytes == head.count * sizeof(float);
  bulk_shard::sum sum;
  const bool summing =
    plain && head.squares == 0 && head.indices == 0 && shard->begin_sum(update, sum);
  float most = 0;     // the values' largest magnitude (negative: one is not finite)
  float sum_most = 0; // the sums' (negative: one is not finite)
  constexpr size_t chunk = size_t{1} << 20; // (a multiple of a float's size)
  for (size_t at = 0; at < update.bytes.size();) {
    const size_t n = std::min(chunk, update.bytes.size() - at);
    if (!read_all(fd, update.bytes.data() + at, n, deadline))
      return false;
    float m = 0; // this chunk's values' largest magnitude
    if (summing && sum_most >= 0) {
      // Summed, and bounded from the same pass for the push that is added again
      // when the sum cannot be taken.
      const size_t first = at / sizeof(float);
      const float s = training::add_scaled(
        reinterpret_cast<const float*>(sum.base->bytes.data()) + first, update.bytes.data() + at,
        sum.scale, reinterpret_cast<float*>(sum.out->bytes.data()) + first, n / sizeof(float), &m);
      sum_most = s < 0 ? s : std::max(sum_most, s);
    } else if (plain && most >= 0) {
      m = training::finite_max_abs(update.bytes.data() + at, n / sizeof(float));
    }
    if (plain && most >= 0)
      most = m < 0 ? m : std::max(most, m);
    at += n;
  }
  if (!read_all(fd, update.squares.data(), update.squares.size(), deadline)
      || !read_all(fd, update.indices.data(), update.indices.size(), deadline))
    return false;
  auto r = summing ? shard->end_sum(std::move(sum), update, most, sum_most)
                   : shard->push(update, plain ? most : -1.0f);
  shard.reset();
  if (r) {
    ack_frame ack{0, 0, r->version, r->staleness};
    return write_all(fd, &ack, sizeof ack, deadline);
  }
  const auto& ctx = r.error().context();
  auto text =
    ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0) : to_string(r.error());
  if (text.size() > max_refusal)
    text.resize(max_refusal);
  uint32_t refusal[2] = {1, static_cast<uint32_t>(text.size())};
  iovec parts[2] = {{refusal, sizeof refusal}, {text.data(), text.size()}};
  return write_all(fd, parts, 2, deadline);
}

} // namespace

/// The shard whose token a connection presents in its hello (whole within 10 s),
/// answered with its shape; none (the connection ends) otherwise.
std::shared_ptr<bulk_shard> bulk_server::hello(int fd) {
  char hello[8 + token_chars];
  if (!read_all(fd, hello, sizeof hello, after(hello_seconds))
      || std::memcmp(hello, magic, 4) != 0)
    return nullptr;
  uint32_t version = 0;
  std::memcpy(&version, hello + 4, 4);
  auto shard = find(std::string(hello + 8, token_chars));
  welcome_frame welcome{shard && version == wire_version ? 0u : 1u, 0, 0, 0};
  if (shard) {
    welcome.layout = shard->layout();
    welcome.count = shard->count();
  }
  if (!write_all(fd, &welcome, sizeof welcome, after(hello_seconds)) || welcome.status != 0)
    return nullptr;
  return shard;
}

/// One connection: the hello, then pulls and pushes until the client goes, sends
/// what is not a frame, or the shard is gone. A frame once begun must come whole
/// within 60 s, and a pull's answer be taken within 60 s; between frames a
/// connection may idle.
void bulk_server::serve(connection& c) {
  const int fd = c.fd;
  no_delay(fd);
  set_timeouts(fd, step_seconds);
  std::weak_ptr<bulk_shard> weak = hello(fd); // the connection does not keep it alive
  if (weak.expired())
    return;
  c.known = true;
  param_update update; // its buffers are reused from push to push
  for (;;) {
    uint32_t op = 0;
    ssize_t got;
    while ((got = ::recv(fd, &op, sizeof op, MSG_WAITALL)) < 0
           && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (stopping_)
        return;
    }
    auto s = weak.lock();
    if (got != static_cast<ssize_t>(sizeof op) || !s)
      return;
    const auto deadline = after(frame_seconds);
    const bool ok = op == op_pull ? serve_pull(fd, std::move(s), deadline)
      : op == op_push             ? serve_push(fd, std::move(s), update, deadline)
                                  : false;
    if (!ok)
      return;
  }
}

std::string local_address_towards(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &found) != 0 || !found)
    return "";
  std::string address;
  const int fd = ::socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0) {
    sockaddr_storage sa{};
    socklen_t len = sizeof sa;
    char text[INET6_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0
        && ::getnameinfo(reinterpret_cast<sockaddr*>(&sa), len, text, sizeof text, nullptr, 0,
                         NI_NUMERICHOST) == 0)
      address = text;
  }
  if (fd >= 0)
    ::close(fd);
  ::freeaddrinfo(found);
  return address;
}

// -- client --------------------------------------------------------------------

caf::expected<std::unique_ptr<bulk_connection>> bulk_connection::open(const bulk_endpoint& to,
                                                                      double timeout) {
  const auto where = to.host + ":" + std::to_string(to.port);
  auto failed = [&](const std::string& why) {
    return caf::make_error(caf::sec::runtime_error, "bulk port " + where + ": " + why);
  };
  if (to.port == 0 || to.token.size() != token_chars)
    return failed("no port or no token");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(to.host.c_str(), std::to_string(to.port).c_str(), &hints, &found) != 0
      || !found)
    return failed("cannot resolve the host");
  int fd = -1;
  std::string why = "cannot connect";
  for (auto* a = found; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
      continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(std::max(1.0, timeout * 1000))) == 1 ? 0 : -1;
      int err = rc == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof err;
      if (rc == 0)
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      why = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0)
    return failed(why);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  no_delay(fd);
  set_timeouts(fd, std::min(1.0, timeout)); // steps; each call's deadline is `timeout`
  std::unique_ptr<bulk_connection> c{new bulk_connection};
  c->fd_ = fd;
  c->where_ = where;
  char hello[8 + token_chars];
  std::memcpy(hello, magic, 4);
  std::memcpy(hello + 4, &wire_version, 4);
  std::memcpy(hello + 8, to.token.data(), token_chars);
  c->timeout_ = timeout;
  welcome_frame welcome{};
  if (!write_all(fd, hello, sizeof hello, after(timeout))
      || !read_all(fd, &welcome, sizeof welcome, after(timeout)))
    return c->fail("hello: " + socket_error());
  if (welcome.status != 0)
    return c->fail("it does not serve this shard (an unknown token, or another version)");
  c->layout_ = welcome.layout;
  c->count_ = welcome.count;
  return c;
}

void bulk_connection::set_timeout(double seconds) {
  timeout_ = seconds;
  if (fd_ >= 0)
    set_timeouts(fd_, std::min(1.0, seconds)); // steps; each call's deadline is `seconds`
}

bulk_connection::~bulk_connection() {
  if (fd_ >= 0)
    ::close(fd_);
}

caf::error bulk_connection::fail(const std::string& what) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = -1;
  return caf::make_error(caf::sec::runtime_error, "bulk port " + where_ + ": " + what);
}

caf::error bulk_connection::send_pull() {
  if (fd_ < 0)
    return fail("closed after an earlier failure");
  const uint32_t op = op_pull;
  if (!write_all(fd_, &op, sizeof op, after(timeout_)))
    return fail("pull: " + socket_error());
  return {};
}

caf::error bulk_connection::receive_pull(param_blob& out) {
  if (fd_ < 0)
    return fail("closed after an earlier failure");
  const auto deadline = after(timeout_);
  pull_head head{};
  if (!read_all(fd_, &head, sizeof head, deadline))
    return fail("pull: " + socket_error());
  if (head.status != 0 || head.count != count_ || head.layout != layout_)
    return fail("pull: an answer that is not this shard's parameters");
  out.version = head.version;
  out.layout = head.layout;
  out.count = head.count;
  out.bytes.resize(head.count * sizeof(float));
  if (!read_all(fd_, out.bytes.data(), out.bytes.size(), deadline))
    return fail("pull: " + socket_error());
  return {};
}

caf::error bulk_connection::pull(param_blob& out) {
  if (auto err = send_pull())
    return err;
  return receive_pull(out);
}

caf::error bulk_connection::send_push(const param_update& u) {
  if (fd_ < 0)
    return fail("closed after an earlier failure");
  const uint32_t op = op_push;
  push_head head{u.seen,
                 u.layout,
                 u.count,
                 u.lr,
                 u.steps,
                 static_cast<uint8_t>(u.gradient ? 1 : 0),
                 u.encoding,
                 0,
                 u.bytes.size(),
                 u.squares.size(),
                 u.indices.size()};
  iovec parts[5] = {{const_cast<uint32_t*>(&op), sizeof op},
                    {&head, sizeof head},
                    {const_cast<char*>(u.bytes.data()), u.bytes.size()},
                    {const_cast<char*>(u.squares.data()), u.squares.size()},
                    {const_cast<char*>(u.indices.data()), u.indices.size()}};
  if (!write_all(fd_, parts, 5, after(timeout_)))
    return fail("push: " + socket_error());
  return {};
}

caf::expected<push_ack> bulk_connection::receive_push() {
  if (fd_ < 0)
    return fail("closed after an earlier failure");
  const auto deadline = after(timeout_);
  uint32_t status[2] = {0, 0}; // status, then padding (an ack) or the refusal's length
  if (!read_all(fd_, status, sizeof status, deadline))
    return fail("push: " + socket_error());
  if (status[0] == 0) {
    uint64_t ack[2]; // version, staleness
    if (!read_all(fd_, ack, sizeof ack, deadline))
      return fail("push: " + socket_error());
    return push_ack{ack[0], ack[1]};
  }
  if (status[0] != 1 || status[1] > max_refusal)
    return fail("push: an answer that is not one");
  std::string text(status[1], '\0');
  if (!read_all(fd_, text.data(), text.size(), deadline))
    return fail("push: " + socket_error());
  return make_error(error_code::invalid_argument, text);
}

caf::expected<push_ack> bulk_connection::push(const param_update& u) {
  if (auto err = send_push(u))
    return err;
  return receive_push();
}

} // namespace pnn
