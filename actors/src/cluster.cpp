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
  if (!failure.empty())
    bad((node.label.empty() ? label_ : node.label) + " " + node.address
        + ": no workers from that node (" + failure + ")");
  workers_.insert(workers_.end(), result.begin(), result.end());
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

ParameterHolder::ParameterHolder(caf::actor_system& sys, const models::Network& model,
                                 holder_options options)
  : sys_(sys) {
  param_blob initial;
  initial.layout = layout_ = training::layout_hash(model);
  initial.bytes = training::parameter_bytes(model);
  initial.count = initial.bytes.size() / sizeof(float);
  holder_ = spawn_holder(sys_, std::move(initial), std::move(options));
}

ParameterHolder::ParameterHolder(caf::actor_system& sys, param_blob initial, holder_options options)
  : sys_(sys), layout_(initial.layout) {
  holder_ = spawn_holder(sys_, std::move(initial), std::move(options));
}

ParameterHolder::~ParameterHolder() {
  stop();
}

void ParameterHolder::stop() {
  if (holder_)
    caf::anon_send_exit(holder_, caf::exit_reason::user_shutdown);
}

holder_status ParameterHolder::status() {
  holder_status result;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(holder_, millis(timeout_), status_atom::value)
    .receive([&](holder_status& s) { result = s; },
             [&](caf::error& e) { failure = sys_.render(e); });
  if (!failure.empty())
    throw pnn::error(error_code::run_failed, "parameter holder: status: " + failure);
  return result;
}

uint64_t ParameterHolder::load_into(models::Network& model) {
  if (training::layout_hash(model) != layout_)
    bad("parameter holder: the model's parameter layout differs from the holder's");
  param_blob blob;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(holder_, millis(timeout_), pull_atom::value)
    .receive([&](param_blob& b) { blob = std::move(b); },
             [&](caf::error& e) { failure = sys_.render(e); });
  if (!failure.empty())
    throw pnn::error(error_code::run_failed, "parameter holder: pull: " + failure);
  training::load_parameter_bytes(model, blob.bytes);
  return blob.version;
}

std::pair<param_blob, std::string> ParameterHolder::checkpoint() {
  std::pair<param_blob, std::string> out;
  std::string failure;
  caf::scoped_actor self{sys_};
  self->request(holder_, millis(timeout_), checkpoint_atom::value)
    .receive([&](param_blob& b, std::string& state) { out = {std::move(b), std::move(state)}; },
             [&](caf::error& e) { failure = sys_.render(e); });
  if (!failure.empty())
    throw pnn::error(error_code::run_failed, "parameter holder: checkpoint: " + failure);
  return out;
}

uint16_t ParameterHolder::publish(uint16_t port, const std::string& bind) {
  if (!sys_.has_middleman())
    bad("parameter holder: the actor system has no network layer (load caf::io::middleman)");
  auto p = publish_actor(sys_, holder_, port, bind);
  if (!p)
    bad("parameter holder: cannot publish on " + bind + ":" + std::to_string(port) + " ("
        + sys_.render(p.error()) + ")");
  return *p;
}

} // namespace pnn
