#pragma once

// The option groups every kind of run is made of (kfold_options, hogwild_options and
// sgd_options derive from them, so a field is still `o.dataset`, `o.hosts`). Each
// group has one source of defaults and checks its own fields in one place, with the
// message naming the command-line flag; a run's validate() calls its groups' and
// then checks only what is its own.

#include <pnn/actors/protocol.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace pnn::models {
class Network;
}

namespace pnn::training {
struct job_options;
struct dataset;
} // namespace pnn::training

namespace pnn {

/// Which data a run trains on: a dataset by name ("fashion-mnist", "synthetic:..."),
/// from its default folder or `data_dir`, the first `subset` training samples (0: all).
struct data_group {
  std::string dataset = "fashion-mnist";
  std::string data_dir;
  int64_t subset = 0;
};

/// The optimizer every job or worker builds: a spec ("adam", "sgd:momentum=0.9").
struct optimizer_group {
  std::string optimizer = "adam";
  double lr = 1e-3;
  /// Throws pnn::error naming --optimizer for a bad spec.
  void validate() const;
};

/// How long and in what steps each job trains, from which seed.
struct schedule_group {
  int64_t epochs = 1;
  int64_t batch_size = 32;
  uint64_t seed = 1; ///< initialisation, order and augmentation
  /// Throws pnn::error naming --epochs or --batch-size.
  void validate() const;
};

/// Other hosts running `pnn-node serve` and how to reach them; `slots` workers here.
struct cluster_group {
  std::vector<std::string> hosts; ///< "host:port"
  bool use_local = true;          ///< also workers on this host (false: --no-local)
  int32_t slots = 0;              ///< workers on this host; 0: one per core
  double connect_timeout = 10;    ///< seconds to wait for a host's node to answer
  double peer_timeout = 30;       ///< seconds of silence after which a host counts as lost
  tls_files tls;                  ///< TLS with mutual authentication (all three files, or none)
  /// Throws pnn::error naming --hosts, --slots, --connect-timeout, --peer-timeout or
  /// a --tls-* flag.
  void validate() const;
};

/// Where a run writes and what it shows while it runs.
struct output_group {
  std::filesystem::path out;     ///< required: where the outputs go
  std::string progress = "auto"; ///< auto, plain or none
  /// Take SIGINT/SIGTERM while the run goes (pnn::interrupt_watch): the first one
  /// has every running job save where it is and the run end in order, marked
  /// interrupted (the command line sets it; a library call leaves signals alone).
  bool handle_interrupts = false;
  /// Throws pnn::error naming --out when it is empty.
  void validate() const;
};

/// One model trained by many workers at once (hogwild, sgd): what the model is,
/// how each worker runs, and how the result is tested.
struct replica_group {
  std::string model = "lenet5";
  std::string scheduler = "cosine"; ///< one schedule per worker
  uint64_t shard_seed = 1;          ///< seed of the shard split
  int32_t threads_per_worker = 1;   ///< LibTorch intra-op threads per worker
  int32_t cores = 0; ///< CAF scheduler threads here; 0: the cores this process may use
  int64_t test_batch_size = 256;
  bool test = true; ///< evaluate the trained model on the test set at the end
  /// Steps (over all workers) in the moving average of loss_smoothed in loss.csv.
  int64_t loss_window = 50;

  // In-process only (the C++ API).
  /// Adjusts each worker's job options (criterion, optimizer factory, transforms);
  /// applies to this host's workers only (functions do not travel).
  std::function<void(const job_spec&, training::job_options&)> customize;
  /// Train this model (built by make_model, so replicas can be built by its registry
  /// name); empty: a fresh `model` initialised from the run's seed.
  std::shared_ptr<models::Network> initial_model;
  /// This host's data instead of loading the dataset (whose name still picks the
  /// transforms; other hosts load it by name).
  std::shared_ptr<const training::dataset> train_data;
  std::shared_ptr<const training::dataset> test_data;

  /// Throws pnn::error naming `command` or the flag: the model, the scheduler,
  /// threads, the test batch size and the loss window.
  void validate(const char* command) const;
};

} // namespace pnn
