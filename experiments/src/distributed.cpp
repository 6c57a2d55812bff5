#include <pnn/experiments/distributed.hpp>

#include <pnn/experiments/async_kfold.hpp>

#include <pnn/error.hpp>
#include <pnn/training/folds.hpp>
#include <pnn/training/records.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace pnn {

using namespace pnn::training;

hogwild_trainer::hogwild_trainer(int num_workers, criterion_fn criterion,
                                 std::filesystem::path root_dir, int64_t batch_size)
  : criterion_(std::move(criterion)) {
  options_.workers = num_workers;
  options_.out = std::move(root_dir);
  options_.batch_size = batch_size;
}

hogwild_report hogwild_trainer::operator()(const models::network_ptr& model,
                                           dataset_ptr train_dataset,
                                           optimizer_factory get_optimizer,
                                           const std::string& scheduler, int64_t epochs) {
  if (!model)
    throw pnn::error(error_code::invalid_argument, "hogwild_trainer: no model");
  if (!train_dataset || train_dataset->size() == 0)
    throw pnn::error(error_code::invalid_argument, "hogwild_trainer: empty training dataset");
  auto o = options_;
  o.initial_model = model;
  o.model = model->registry_name();
  o.train_data = std::move(train_dataset);
  o.test_data = nullptr;
  o.test = false; // the model_tester's job
  o.scheduler = scheduler;
  o.epochs = epochs;
  o.customize = customize_jobs(criterion_, std::move(get_optimizer), o.customize);
  return run_hogwild(o);
}

model_tester::model_tester(dataset_ptr test_dataset, std::filesystem::path root_dir,
                           int64_t batch_size)
  : data_(std::move(test_dataset)), root_(std::move(root_dir)), batch_size_(batch_size) {
  if (!data_ || data_->size() == 0)
    throw pnn::error(error_code::invalid_argument, "model_tester: empty test dataset");
  if (batch_size_ < 1)
    throw pnn::error(error_code::invalid_argument,
                     "model_tester: batch size " + std::to_string(batch_size_)
                       + ": expected at least 1");
  transform_ = default_transform(data_->name, false);
}

evaluation model_tester::operator()(models::Network& model) {
  auto e = evaluate(model, *data_, all_indices(data_->size()), transform_, batch_size_);
  if (!root_.empty()) {
    write_file_atomic(root_ / "confusion.csv", confusion_csv(e.confusion, data_->classes));
    write_file_atomic(root_ / "test.json", to_json(e, data_->classes).dump(2) + "\n");
  }
  return e;
}

} // namespace pnn
