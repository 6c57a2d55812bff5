#include <pnn/runtime/sgd_command.hpp>

#include <pnn/experiments/sgd.hpp>
#include <pnn/runtime/cli.hpp>
#include <pnn/system.hpp>

#include "run_footer.hpp"

#include <cstdio>

namespace pnn::runtime {

int run_sgd_command(const sgd_options& o) {
  char every_step[64] = "";
  if (o.local_after > 0)
    std::snprintf(every_step, sizeof every_step, " (every step for the first %g epoch(s))",
                  o.local_after);
  std::printf("pnn sgd: %s on %s through a parameter holder, %zu host(s)%s, n_push %d, "
              "n_pull %d%s, %s lr %g, %s, %lld epoch(s), batch %lld, %s\n",
              o.model.c_str(), o.dataset.c_str(), o.hosts.size(), o.use_local ? " + this one" : "",
              o.n_push, o.n_pull, every_step, o.optimizer.c_str(), o.lr, o.scheduler.c_str(),
              static_cast<long long>(o.epochs), static_cast<long long>(o.batch_size),
              o.optimizer_on == "holder"  ? "optimizer on the holder"
              : o.merge == "average" ? "updates averaged (workers at W x lr)"
                                     : "updates summed");
  std::fflush(stdout);
  auto r = run_sgd(o);
  std::printf("\n%-8s %-28s %8s %7s %7s %9s %11s\n", "worker", "host", "samples", "pulls", "pushes",
              "rejected", "train loss");
  for (size_t i = 0; i < r.workers.size(); ++i) {
    const auto& w = r.workers[i];
    std::printf("%-8zu %-28s %8lld %7lld %7lld %9lld %11.4f\n", i, w.host.c_str(),
                static_cast<long long>(w.samples), static_cast<long long>(w.result.sgd.pulls),
                static_cast<long long>(w.result.sgd.pushes),
                static_cast<long long>(w.result.sgd.rejected_pushes), w.result.train_loss);
  }
  std::printf("\nholder: version %llu, %llu updates applied, %llu rejected, %llu pulls\n",
              static_cast<unsigned long long>(r.holder.version),
              static_cast<unsigned long long>(r.holder.applied),
              static_cast<unsigned long long>(r.holder.rejected),
              static_cast<unsigned long long>(r.holder.pulls));
  detail::print_run_footer(r, o.out);
  if (r.interrupted)
    return report_interrupted("sgd", "the workers stopped",
                              "the holder's parameters (version "
                                + std::to_string(r.holder.version) + ") saved in "
                                + (o.out / "holder.pt").string());
  return 0;
}

} // namespace pnn::runtime
