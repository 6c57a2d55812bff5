#include <pnn/runtime/hogwild_command.hpp>

#include <pnn/experiments/hogwild.hpp>
#include <pnn/system.hpp>

#include <pnn/runtime/cli.hpp>

#include "run_footer.hpp"

#include <cstdio>

namespace pnn::runtime {

int run_hogwild_command(const hogwild_options& o) {
  std::printf("pnn hogwild: %s on %s, %d worker(s) sharing one model, %s lr %g, %s, "
              "%lld epoch(s), batch %lld\n",
              o.model.c_str(), o.dataset.c_str(),
              o.workers > 0 ? o.workers : pnn::available_cores(), o.optimizer.c_str(), o.lr,
              o.scheduler.c_str(), static_cast<long long>(o.epochs),
              static_cast<long long>(o.batch_size));
  std::fflush(stdout);
  auto r = run_hogwild(o);
  std::printf("\n%-8s %8s %10s %12s\n", "worker", "samples", "steps", "train loss");
  for (size_t i = 0; i < r.workers.size(); ++i) {
    const auto& w = r.workers[i];
    std::printf("%-8zu %8lld %10zu %12.4f\n", i, static_cast<long long>(w.samples), w.steps.size(),
                w.result.train_loss);
  }
  std::printf("\n");
  detail::print_run_footer(r, o.out);
  if (r.interrupted)
    return report_interrupted("hogwild", "the workers stopped",
                              "the model so far in " + (o.out / "model.pt").string()
                                + ", each worker's place in its latest.pt");
  return 0;
}

} // namespace pnn::runtime
