#include <pnn/metrics.hpp>

namespace pnn {

process_metrics& metrics() {
  static process_metrics m;
  return m;
}

} // namespace pnn
