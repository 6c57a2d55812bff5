#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace pnn::runtime {

/// `--metrics-port`: this process's metrics (pnn/metrics.hpp) over HTTP at
/// http://ADDRESS:PORT/metrics in Prometheus' text format (prometheus-cpp's
/// serializer, a small HTTP responder thread of our own), while the object lives. pnn_info{command} says what the process runs.
class metrics_endpoint {
public:
  /// Listens on address:port; throws
  /// pnn::error(invalid_argument) naming --metrics-port when it cannot.
  metrics_endpoint(const std::string& command, const std::string& address, uint16_t port);
  ~metrics_endpoint();
  metrics_endpoint(const metrics_endpoint&) = delete;
  metrics_endpoint& operator=(const metrics_endpoint&) = delete;

  uint16_t port() const;

private:
  struct impl;
  std::unique_ptr<impl> d_;
};

} // namespace pnn::runtime
