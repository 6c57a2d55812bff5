#define CAF_SUITE training.tensorboard
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/tensorboard.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>

using namespace pnn;
namespace tb = pnn::training::tensorboard;

namespace {

uint32_t crc_of(const std::vector<unsigned char>& bytes) {
  return tb::crc32c(bytes.data(), bytes.size());
}

std::string file_bytes(const std::filesystem::path& f) {
  return test::read_text(f);
}

void put_bytes(const std::filesystem::path& f, const std::string& bytes) {
  std::ofstream out(f, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// The only value of a record, with its tag checked.
const tb::read_value& only(const tb::read_event& e, const std::string& tag) {
  CAF_REQUIRE_EQUAL(e.values.size(), 1u);
  CAF_CHECK_EQUAL(e.values[0].tag, tag);
  return e.values[0];
}

} // namespace

CAF_TEST(crc32c matches the published test vectors) {
  // RFC 3720 (iSCSI), appendix B.4, and the common check value of "123456789".
  CAF_CHECK_EQUAL(crc_of(std::vector<unsigned char>(32, 0x00)), 0x8a9136aau);
  CAF_CHECK_EQUAL(crc_of(std::vector<unsigned char>(32, 0xff)), 0x62a8ab43u);
  std::vector<unsigned char> up(32), down(32);
  for (unsigned i = 0; i < 32; ++i) {
    up[i] = static_cast<unsigned char>(i);
    down[i] = static_cast<unsigned char>(31 - i);
  }
  CAF_CHECK_EQUAL(crc_of(up), 0x46dd794eu);
  CAF_CHECK_EQUAL(crc_of(down), 0x113fdb5cu);
  const char* check = "123456789";
  CAF_CHECK_EQUAL(tb::crc32c(check, 9), 0xe3069283u);
  // Continuing a CRC over a split input gives the CRC of the whole.
  CAF_CHECK_EQUAL(tb::crc32c(check + 4, 5, tb::crc32c(check, 4)), 0xe3069283u);
  // TFRecord's mask: rotate right by 15, add 0xa282ead8 (mod 2^32).
  const uint32_t c = 0xe3069283u;
  CAF_CHECK_EQUAL(tb::masked_crc32c(check, 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

CAF_TEST(an event file reads back record by record with its scalars and hparams) {
  test::temp_dir dir;
  tb::event_file f{1000.5};
  f.experiment({{"model", {std::string{"lenet5"}, std::string{"alexnet"}}},
                {"lr", {1e-3, 1e-2}},
                {"nesterov", {true}}},
               {"val/accuracy"}, 1000.5);
  f.session_start({{"model", std::string{"lenet5"}}, {"lr", 1e-3}, {"nesterov", true}},
                  "lenet5/cosine", 1001);
  f.scalar("train/loss", 7, 1002.25, 0.125);
  f.scalar("val/accuracy", 1, 1003, 0.8125);
  f.session_end(true, 1004);
  const auto file = f.write(dir.path());
  CAF_CHECK_EQUAL(file.filename().string(), "events.out.tfevents.0000001000.pnn");
  CAF_CHECK_EQUAL(file_bytes(file), f.bytes());

  auto events = tb::read_events(file);
  CAF_REQUIRE_EQUAL(events.size(), 6u);
  CAF_CHECK_EQUAL(events[0].file_version, "brain.Event:2");
  CAF_CHECK_EQUAL(events[0].wall_time, 1000.5);
  CAF_CHECK(events[0].values.empty());

  auto experiment = nlohmann::json::parse(only(events[1], "_hparams_/experiment").plugin_json);
  CAF_CHECK_EQUAL(only(events[1], "_hparams_/experiment").plugin, "hparams");
  const auto& infos = experiment["experiment"]["hparam_infos"];
  CAF_REQUIRE_EQUAL(infos.size(), 3u);
  CAF_CHECK_EQUAL(infos[0]["name"], "model");
  CAF_CHECK_EQUAL(infos[0]["type"], "DATA_TYPE_STRING");
  CAF_CHECK_EQUAL(infos[0]["domain_discrete"], nlohmann::json::parse(R"(["lenet5","alexnet"])"));
  CAF_CHECK_EQUAL(infos[1]["type"], "DATA_TYPE_FLOAT64");
  CAF_CHECK_EQUAL(infos[2]["type"], "DATA_TYPE_BOOL");
  CAF_CHECK_EQUAL(experiment["experiment"]["metric_infos"][0]["name"]["tag"], "val/accuracy");

  auto start =
    nlohmann::json::parse(only(events[2], "_hparams_/session_start_info").plugin_json);
  CAF_CHECK_EQUAL(start["session_start_info"]["group_name"], "lenet5/cosine");
  CAF_CHECK_EQUAL(start["session_start_info"]["hparams"]["model"], "lenet5");
  CAF_CHECK_EQUAL(start["session_start_info"]["hparams"]["lr"].get<double>(), 1e-3);
  CAF_CHECK_EQUAL(start["session_start_info"]["hparams"]["nesterov"], true);
  CAF_CHECK_EQUAL(start["session_start_info"]["start_time_secs"].get<double>(), 1001.0);

  const auto& loss = only(events[3], "train/loss");
  CAF_CHECK(loss.has_simple);
  CAF_CHECK_EQUAL(loss.simple, 0.125);
  CAF_CHECK_EQUAL(events[3].step, 7);
  CAF_CHECK_EQUAL(events[3].wall_time, 1002.25);
  CAF_CHECK_EQUAL(only(events[4], "val/accuracy").simple, 0.8125);
  auto end = nlohmann::json::parse(only(events[5], "_hparams_/session_end_info").plugin_json);
  CAF_CHECK_EQUAL(end["session_end_info"]["status"], "STATUS_SUCCESS");

  // Written again (a job that went on): one file, the newer.
  tb::event_file again{2000};
  again.scalar("train/loss", 1, 2000, 1);
  const auto second = again.write(dir.path());
  CAF_CHECK(!std::filesystem::exists(file));
  CAF_CHECK_EQUAL(tb::event_files(dir.path()), std::vector<std::filesystem::path>{second});
}

CAF_TEST(a torn or altered event file is refused naming the file and the record) {
  test::temp_dir dir;
  tb::event_file f{1};
  f.scalar("train/loss", 1, 2, 0.5);
  const auto file = f.write(dir.path());
  const std::string good = f.bytes();
  // The first record is 12 + n + 4 bytes; the second starts right after it.
  uint64_t first_length = 0;
  std::memcpy(&first_length, good.data(), 8);
  const size_t at = 12 + first_length + 4;
  auto expect_error = [&](const std::string& bytes, const std::string& part) {
    put_bytes(file, bytes);
    auto [code, msg] = test::error_of([&] { tb::read_events(file); });
    CAF_MESSAGE(msg);
    CAF_CHECK(code == error_code::malformed_file);
    CAF_CHECK(test::contains(msg, file.string()));
    CAF_CHECK(test::contains(msg, "record at byte " + std::to_string(at)));
    CAF_CHECK(test::contains(msg, part));
  };
  auto flipped = [&](size_t offset) {
    auto b = good;
    b[offset] = static_cast<char>(b[offset] ^ 0x40);
    return b;
  };
  expect_error(flipped(at + 2), "the length's CRC");
  expect_error(flipped(at + 8), "the length's CRC");
  expect_error(flipped(at + 14), "the data's CRC");
  expect_error(flipped(good.size() - 1), "the data's CRC");
  expect_error(good.substr(0, good.size() - 3), "cut short");
  expect_error(good.substr(0, at + 5), "cut short");
  // Framed right but not an Event.
  tb::event_file g{1};
  std::string junk = g.bytes();
  const std::string payload = "\xff\xff\xff";
  std::string frame;
  uint64_t n = payload.size();
  frame.append(reinterpret_cast<const char*>(&n), 8);
  uint32_t c = tb::masked_crc32c(frame.data(), 8);
  frame.append(reinterpret_cast<const char*>(&c), 4);
  frame += payload;
  c = tb::masked_crc32c(payload.data(), payload.size());
  frame.append(reinterpret_cast<const char*>(&c), 4);
  put_bytes(file, junk + frame);
  auto [code, msg] = test::error_of([&] { tb::read_events(file); });
  CAF_CHECK(code == error_code::malformed_file);
  CAF_CHECK(test::contains(msg, "not an Event"));
  put_bytes(file, good);
  CAF_CHECK_EQUAL(tb::read_events(file).size(), 2u);
}

CAF_TEST(the events of a job hold every step and the validated epochs) {
  tb::job_run job;
  for (int64_t s = 1; s <= 6; ++s)
    job.steps.push_back({0.5 * static_cast<double>(s), (s + 2) / 3, (s - 1) % 3 + 1, s,
                         1.0 / static_cast<double>(s), 1e-3});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  job.epochs.push_back({1, 1.6, 1.6, 0.9, 0.5, nan, nan, 1e-3});
  job.epochs.push_back({2, 3.2, 1.6, 0.4, 0.7, 0.6, 0.75, 1e-4});
  job.clock_zero = 5000;
  job.finished_at = 5004;
  job.samples_per_epoch = 96;
  job.hparams = {{"model", std::string{"lenet5"}}, {"fold", 1.0}};
  job.group = "lenet5/cosine";
  job.final = {{"test/accuracy", 0.7}};
  auto f = tb::job_events(job);
  test::temp_dir dir;
  auto events = tb::read_events(f.write(dir.path()));
  std::map<std::string, std::vector<std::pair<int64_t, double>>> scalars;
  for (const auto& e : events)
    for (const auto& v : e.values)
      if (v.has_simple)
        scalars[v.tag].emplace_back(e.step, v.simple);
  CAF_CHECK_EQUAL(scalars["train/loss"].size(), 6u);
  CAF_CHECK_EQUAL(scalars["train/loss"][5].first, 6);
  CAF_CHECK_EQUAL(scalars["train/loss"][5].second, static_cast<double>(1.0f / 6.0f));
  CAF_CHECK_EQUAL(scalars["train/lr"].size(), 6u);
  CAF_CHECK_EQUAL(scalars["train/epoch_loss"].size(), 2u);
  // Epoch 1 was not validated: no point for it.
  CAF_REQUIRE_EQUAL(scalars["val/accuracy"].size(), 1u);
  CAF_CHECK_EQUAL(scalars["val/accuracy"][0], std::make_pair(int64_t{2}, 0.75));
  CAF_CHECK_EQUAL(scalars["train/samples_per_second"][0].second, 60.0);
  CAF_CHECK_EQUAL(scalars["test/accuracy"][0].first, 6);
  CAF_CHECK_EQUAL(static_cast<float>(scalars["test/accuracy"][0].second), 0.7f);
  // The first step's wall time is the job's clock zero plus its time.
  CAF_CHECK_EQUAL(events[2].wall_time, 5000.5);
}
