#include <pnn/actors/cluster.hpp>

#include <pnn/actors/errors.hpp>
#include <pnn/actors/network.hpp>
#include <pnn/error.hpp>
#include <pnn/models/network.hpp>
#include <pnn/training/parameters.hpp>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

#include <algorithm>
#include <chrono>
#include <limits>

namespace pnn {

namespace {

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.001, seconds) * 1000));
}

[[noreturn]] void bad(const std::string& msg) {
  throw pnn::error(error_code::invalid_argument, msg);
}

} // namespace

Cluster::Cluster(caf::actor_system& sys, double timeout, std::string label)
  : sys_(sys), timeout_(timeout), label_(std::move(label)) {
  nodes_.reserve(64);
}

Cluster::~Cluster() {
  shutdown();
}

const remote_node& Cluster::connect(const std::string& host_port, const std::string& label) {
  const std::string& named = label.empty() ? label_ : label;
  const bool known = std::any_of(nodes_.begin(), nodes_.end(),
                                 [&](const remote_node& n) { return n.address == host_port; });
  if (!known && nodes_.size() == nodes_.capacity())
    bad(named + " " + host_port + ": at most " + std::to_string(nodes_.capacity()) + " hosts");
  auto [host, port] = parse_host_port(host_port, named);
  if (!sys_.has_middleman())
    bad(named + " " + host_port
        + ": the actor system has no network layer (load caf::io::middleman)");
  auto node = connect_actor<node_actor>(sys_, host, port);
  if (!node) {
    const bool handshake = node.error() == caf::sec::disconnect_during_handshake;
    bad(named + " " + host_port + ": cannot connect (" + sys_.render(node.error()) + "); "
        + (handshake ? "the node ended the handshake: with TLS, both sides need certificates "
                       "signed by the CA the other trusts (--tls-cert, --tls-key, --tls-ca), "
                       "and with roles a coordinator's here and a worker's there "
                       "(scripts/make-certs.sh NAME:coordinator, NAME:worker)"
                     : "is `pnn-node serve --port " + std::to_string(port) + "` running there?"));
  }
  remote_node r;
  r.address = host_port;
  r.label = named;
  r.handle = *node;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(r.handle, millis(timeout_), status_atom::value)
    .receive([&](node_info& info) { r.info = std::move(info); },
             [&](caf::error& e) { failure = sys_.render(e); });
  if (!failure.empty())
    bad(named + " " + host_port + ": no answer from its node (" + failure + ")");
  // A host that comes back (a new node at the same address) takes its old entry.
  for (auto& n : nodes_)
    if (n.address == r.address) {
      n = std::move(r);
      return n;
    }
  nodes_.push_back(std::move(r));
  return nodes_.back();
}

std::vector<worker_actor> Cluster::spawn_workers(const remote_node& node, event_sink_actor sink) {
  std::vector<worker_actor> result;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(node.handle, millis(timeout_), spawn_atom::value, std::move(sink))
    .receive([&](std::vector<worker_actor>& remote) { result = std::move(remote); },
             [&](caf::error& e) { failure = sys_.render(e); });
  // Workers of that node only: a handle to another host's actor would get this
  // run's jobs, and its exit at the end.
  for (const auto& w : result)
    if (failure.empty() && (!w || w.node() != node.handle.node()))
      failure = "it answered with an actor of another host";
  if (!failure.empty())
    bad((node.label.empty() ? label_ : node.label) + " " + node.address
        + ": no workers from that node (" + failure + ")");
  workers_.insert(workers_.end(), result.begin(), result.end());
  return result;
}

holder_actor Cluster::spawn_holder(const remote_node& node, const holder_spec& spec,
                                   holder_home_actor home, bulk_endpoint* endpoint) {
  holder_actor result;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(node.handle, millis(timeout_), spawn_atom::value, spec, std::move(home))
    .receive(
      [&](holder_actor& h, bulk_endpoint& served) {
        result = std::move(h);
        if (endpoint && served.port != 0) {
          // Where this process reached the node: the host part of its address.
          *endpoint = std::move(served);
          auto host = node.address.substr(0, node.address.rfind(':'));
          if (host.size() > 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2); // [v6]:port
          endpoint->host = host;
        }
      },
      [&](caf::error& e) { failure = sys_.render(e); });
  if (failure.empty() && !result)
    failure = "no handle";
  if (failure.empty() && result.node() != node.handle.node())
    failure = "it answered with an actor of another host";
  if (!failure.empty())
    bad((node.label.empty() ? label_ : node.label) + " " + node.address + ": no holder shard "
        + std::to_string(spec.shard) + " from that node (" + failure + ")");
  return result;
}

std::vector<worker_actor> Cluster::spawn_local_workers(int32_t n, event_sink_actor sink,
                                                       worker_options base) {
  std::vector<worker_actor> result;
  const int32_t first = base.slot;
  for (int32_t i = 0; i < n; ++i) {
    auto wo = base;
    wo.slot = first + i;
    result.push_back(spawn_worker(sys_, sink, wo));
  }
  workers_.insert(workers_.end(), result.begin(), result.end());
  return result;
}

void Cluster::shutdown() {
  for (auto& w : workers_)
    caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
  workers_.clear();
}

std::vector<uint64_t> shard_bounds(const models::Network& model, size_t shards) {
  std::vector<uint64_t> tensors;
  for (const auto& p : model.parameters())
    tensors.push_back(static_cast<uint64_t>(p.numel()));
  return shard_bounds(tensors, shards);
}

ParameterHolder::ParameterHolder(caf::actor_system& sys, const models::Network& model,
                                 holder_options options, size_t shards)
  : sys_(sys) {
  param_blob whole;
  whole.layout = layout_ = training::layout_hash(model);
  whole.bytes = training::parameter_bytes(model);
  whole.count = whole.bytes.size() / sizeof(float);
  bounds_ = shard_bounds(model, shards);
  try {
    for (auto& slice : split(whole, bounds_))
      shards_.push_back(spawn_holder(sys_, std::move(slice), options));
  } catch (...) {
    stop();
    throw;
  }
}

ParameterHolder::ParameterHolder(caf::actor_system& sys, param_blob initial, holder_options options)
  : sys_(sys), bounds_{0, initial.count}, layout_(initial.layout) {
  shards_.push_back(spawn_holder(sys_, std::move(initial), std::move(options)));
}

ParameterHolder::ParameterHolder(caf::actor_system& sys, uint64_t layout,
                                 std::vector<uint64_t> bounds, std::vector<param_blob> initial,
                                 std::vector<holder_options> options)
  : sys_(sys), bounds_(std::move(bounds)), layout_(layout) {
  const size_t n = initial.size();
  if (n == 0 || options.size() != n || bounds_.size() != n + 1 || bounds_.front() != 0)
    bad("parameter holder: " + std::to_string(n) + " shards need as many options and "
        + std::to_string(n + 1) + " bounds from 0");
  for (size_t i = 0; i < n; ++i) {
    const auto& b = initial[i];
    const uint64_t want = n == 1 ? layout : shard_layout(layout, bounds_[i], bounds_[i + 1]);
    if (bounds_[i + 1] <= bounds_[i] || b.count != bounds_[i + 1] - bounds_[i] || b.layout != want)
      bad("parameter holder: shard " + std::to_string(i) + " of " + std::to_string(n)
          + " does not fit its bounds or the model's layout");
  }
  try {
    for (size_t i = 0; i < n; ++i)
      shards_.push_back(spawn_holder(sys_, std::move(initial[i]), std::move(options[i])));
  } catch (...) {
    stop();
    throw;
  }
}

ParameterHolder::ParameterHolder(caf::actor_system& sys, uint64_t layout,
                                 std::vector<uint64_t> bounds, std::vector<holder_actor> running)
  : sys_(sys), shards_(std::move(running)), bounds_(std::move(bounds)), layout_(layout) {
  if (shards_.empty() || bounds_.size() != shards_.size() + 1 || bounds_.front() != 0
      || std::any_of(shards_.begin(), shards_.end(), [](const holder_actor& h) { return !h; })) {
    stop();
    bad("parameter holder: " + std::to_string(shards_.size()) + " shards need "
        + std::to_string(shards_.size() + 1) + " bounds from 0 and a handle each");
  }
}

std::vector<param_blob> ParameterHolder::split(const param_blob& whole,
                                               const std::vector<uint64_t>& bounds) {
  if (bounds.size() < 2 || bounds.front() != 0 || bounds.back() != whole.count
      || whole.bytes.size() != whole.count * sizeof(float))
    bad("parameter holder: shard bounds that do not cover " + std::to_string(whole.count)
        + " values");
  if (bounds.size() == 2)
    return {whole};
  std::vector<param_blob> out;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    if (bounds[i + 1] <= bounds[i])
      bad("parameter holder: shard bounds that do not increase");
    param_blob b;
    b.version = whole.version;
    b.layout = shard_layout(whole.layout, bounds[i], bounds[i + 1]);
    b.count = bounds[i + 1] - bounds[i];
    const auto from = whole.bytes.begin() + static_cast<std::ptrdiff_t>(bounds[i] * sizeof(float));
    b.bytes.assign(from, from + static_cast<std::ptrdiff_t>(b.count * sizeof(float)));
    out.push_back(std::move(b));
  }
  return out;
}

ParameterHolder::~ParameterHolder() {
  stop();
}

void ParameterHolder::stop() {
  for (auto& h : shards_)
    if (h)
      caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
}

void ParameterHolder::replace(size_t shard, holder_actor next) {
  if (shard >= shards_.size() || !next)
    bad("parameter holder: no shard " + std::to_string(shard) + " to replace");
  if (shards_[shard] == next)
    return;
  caf::anon_send_exit(shards_[shard], caf::exit_reason::user_shutdown);
  shards_[shard] = std::move(next);
}

void ParameterHolder::link(sgd_link& link) const {
  link.holder = shards_.front();
  link.shards.clear();
  link.bounds.clear();
  if (shards_.size() > 1) {
    link.shards = shards_;
    link.bounds = bounds_;
  }
}

/// Why shard `i`'s parameters `b` are not its own ("" : they are).
std::string ParameterHolder::misfit(size_t i, const param_blob& b) const {
  const uint64_t want = shards_.size() == 1 ? layout_ : shard_layout(layout_, bounds_[i], bounds_[i + 1]);
  if (b.layout != want || b.count != bounds_[i + 1] - bounds_[i])
    return "shard " + std::to_string(i) + " answered parameters of another layout or size";
  auto why = training::check_floats(b.bytes, b.count);
  return why.empty() ? why : "shard " + std::to_string(i) + ": " + why;
}

std::vector<holder_status> ParameterHolder::shard_status() {
  std::vector<holder_status> out;
  caf::scoped_actor self{sys_};
  for (size_t i = 0; i < shards_.size(); ++i) {
    std::string failure;
    self->request(shards_[i], millis(timeout_), status_atom::value)
      .receive([&](holder_status& s) { out.push_back(s); },
               [&](caf::error& e) { failure = sys_.render(e); });
    if (!failure.empty())
      throw pnn::error(error_code::run_failed, "parameter holder: status: " + failure);
  }
  return out;
}

holder_status ParameterHolder::status() {
  const auto all = shard_status();
  holder_status r = all.front();
  for (const auto& s : all) {
    r.version = std::min(r.version, s.version);
    r.applied = std::min(r.applied, s.applied);
    r.rounds = std::min(r.rounds, s.rounds);
    r.rejected = std::max(r.rejected, s.rejected);
    r.pulls = std::max(r.pulls, s.pulls);
    r.streamed = std::max(r.streamed, s.streamed);
  }
  return r;
}

uint64_t ParameterHolder::load_into(models::Network& model) {
  if (training::layout_hash(model) != layout_)
    bad("parameter holder: the model's parameter layout differs from the holder's");
  std::vector<char> bytes;
  uint64_t version = std::numeric_limits<uint64_t>::max();
  caf::scoped_actor self{sys_};
  for (size_t i = 0; i < shards_.size(); ++i) {
    std::string failure;
    self->request(shards_[i], millis(timeout_), pull_atom::value)
      .receive(
        [&](param_blob& b) {
          failure = misfit(i, b);
          bytes.insert(bytes.end(), b.bytes.begin(), b.bytes.end());
          version = std::min(version, b.version);
        },
        [&](caf::error& e) { failure = sys_.render(e); });
    if (!failure.empty())
      throw pnn::error(error_code::run_failed, "parameter holder: pull: " + failure);
  }
  training::load_parameter_bytes(model, bytes);
  return version;
}

std::vector<std::pair<param_blob, std::string>> ParameterHolder::checkpoints() {
  std::vector<std::pair<param_blob, std::string>> out;
  caf::scoped_actor self{sys_};
  for (size_t i = 0; i < shards_.size(); ++i) {
    std::string failure;
    self->request(shards_[i], millis(timeout_), checkpoint_atom::value)
      .receive(
        [&](param_blob& b, std::string& state) {
          failure = misfit(i, b);
          out.emplace_back(std::move(b), std::move(state));
        },
        [&](caf::error& e) { failure = sys_.render(e); });
    if (!failure.empty())
      throw pnn::error(error_code::run_failed, "parameter holder: checkpoint: " + failure);
  }
  return out;
}

std::pair<param_blob, std::string> ParameterHolder::checkpoint() {
  if (shards_.size() > 1)
    bad("parameter holder: " + std::to_string(shards_.size())
        + " shards have a checkpoint each (checkpoints())");
  return std::move(checkpoints().front());
}

uint16_t ParameterHolder::publish(uint16_t port, const std::string& bind) {
  if (!sys_.has_middleman())
    bad("parameter holder: the actor system has no network layer (load caf::io::middleman)");
  if (shards_.size() > 1)
    bad("parameter holder: a sharded holder is not published on one port");
  auto p = publish_actor(sys_, shards_.front(), port, bind);
  if (!p)
    bad("parameter holder: cannot publish on " + bind + ":" + std::to_string(port) + " ("
        + sys_.render(p.error()) + ")");
  return *p;
}

} // namespace pnn
