#define CAF_SUITE training.records
#include <caf/test/unit_test.hpp>

#include "test_util.hpp"

#include <pnn/training/folders.hpp>
#include <pnn/training/records.hpp>
#include <pnn/system.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>
#include <thread>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace pnn;
using namespace pnn::training;

CAF_TEST(atomic writes create folders and replace content without temporary files left) {
  test::temp_dir dir;
  auto file = dir / "a/b/c.json";
  write_file_atomic(file, "one");
  CAF_CHECK_EQUAL(test::read_text(file), "one");
  write_file_atomic(file, "two");
  CAF_CHECK_EQUAL(test::read_text(file), "two");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir / "a/b"))
    ++entries;
  CAF_CHECK_EQUAL(entries, 1u);
}

CAF_TEST(an unwritable folder is an io error naming the file) {
  if (::geteuid() == 0) {
    // root ignores permissions: use a path below a regular file instead.
    test::temp_dir dir;
    test::write_bytes(dir / "file", {1});
    auto [code, msg] = test::error_of([&] { write_file_atomic(dir / "file/x.json", "x"); });
    CAF_CHECK(code == error_code::io_error);
    CAF_CHECK(test::contains(msg, "file"));
    return;
  }
  test::temp_dir dir;
  ::chmod(dir.path().c_str(), 0500);
  auto [code, msg] = test::error_of([&] { write_file_atomic(dir / "x.json", "x"); });
  ::chmod(dir.path().c_str(), 0700);
  CAF_CHECK(code == error_code::io_error);
  CAF_CHECK(test::contains(msg, "x.json"));
}

CAF_TEST(step and epoch records round - trip through JSON and render as CSV) {
  step_record s{1.5, 0, 3, 4, 0.25, 1e-3};
  auto s2 = step_from_json(nlohmann::json::parse(to_json(s).dump()));
  CAF_CHECK_EQUAL(s2.step, 4);
  CAF_CHECK_EQUAL(s2.loss, 0.25);
  epoch_record e;
  e.epoch = 2;
  e.train_loss = 0.5;
  e.val_loss = NAN;
  e.val_accuracy = NAN;
  auto e2 = epoch_from_json(nlohmann::json::parse(to_json(e).dump()));
  CAF_CHECK(std::isnan(e2.val_loss));
  CAF_CHECK_EQUAL(e2.train_loss, 0.5);
  auto csv = steps_csv({s});
  CAF_CHECK_EQUAL(csv, "time,epoch,batch,step,loss,lr\n1.5,0,3,4,0.25,0.001\n");
  auto ecsv = epochs_csv({e});
  CAF_CHECK(test::contains(ecsv, "\n2,0,0,0.5,0,,,0\n"));
  auto confusion = confusion_csv({{1, 2}, {3, 4}}, {"a", "b"});
  CAF_CHECK_EQUAL(confusion, "true\\predicted,\"a\",\"b\"\n\"a\",1,2\n\"b\",3,4\n");
}

CAF_TEST(the cpu monitor samples utilisation between 0 and 1) {
  cpu_monitor m{std::chrono::milliseconds{50}};
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds{300};
  volatile double x = 0;
  while (std::chrono::steady_clock::now() < until)
    x = x + 1;
  m.stop();
  auto samples = m.samples();
  CAF_CHECK_GREATER_OR_EQUAL(samples.size(), 3u);
  for (const auto& s : samples) {
    CAF_CHECK_GREATER_OR_EQUAL(s.utilization, 0.0);
    CAF_CHECK_LESS_OR_EQUAL(s.utilization, 1.0);
  }
  // This thread was busy: the process used close to one core.
  CAF_CHECK_GREATER(samples[1].process_cores, 0.5);
  CAF_CHECK(test::contains(m.csv(), "time,utilization,process_cores\n"));
  CAF_CHECK_GREATER_OR_EQUAL(available_cores(), 1);
}

CAF_TEST(record files from a peer are written only under the names a job writes) {
  test::temp_dir dir;
  auto job = dir / "lenet5/cosine/fold0";
  auto refused = write_record_files(
    job, {"steps.csv", "../../../time.json", "..", "result.json", "epochs.csv", "steps.csv", ""},
    {"s", "escape", "dots", "forged", "e", "again", "empty"});
  CAF_CHECK_EQUAL(test::read_text(job / "steps.csv"), "s");
  CAF_CHECK_EQUAL(test::read_text(job / "epochs.csv"), "e");
  CAF_CHECK((refused
             == std::vector<std::string>{"../../../time.json", "..", "result.json", "steps.csv",
                                         ""}));
  CAF_CHECK(!std::filesystem::exists(dir / "time.json"));
  CAF_CHECK(!std::filesystem::exists(job / "result.json"));
  // A name without content is refused too.
  refused = write_record_files(job, {"metrics.json"}, {});
  CAF_CHECK_EQUAL(refused.size(), 1u);
  CAF_CHECK(!std::filesystem::exists(job / "metrics.json"));
}

CAF_TEST(a folder name is one level below its parent whatever the name) {
  CAF_CHECK_EQUAL(folder_name("warm:t_0=0.5"), "warm_t_0_0.5");
  CAF_CHECK_EQUAL(folder_name(".."), "_.");
  CAF_CHECK_EQUAL(folder_name("."), "_");
  CAF_CHECK_EQUAL(folder_name(""), "_");
  CAF_CHECK_EQUAL(folder_name("../x"), "_._x");
  CAF_CHECK_EQUAL(folder_name(".hidden"), "_hidden");
  auto dir = job_dir("/r/out", "..", "..", "fold-31337");
  CAF_CHECK_EQUAL(dir.lexically_normal().string(), "/r/out/_./_./fold-31337");
}

CAF_TEST(scratch folders have unguessable private names and those of dead processes go) {
  std::set<std::string> names;
  for (int i = 0; i < 3; ++i) {
    scratch_folder s;
    const auto name = s.path().filename().string();
    const auto prefix = "pnn-node-" + std::to_string(::getpid()) + "-";
    CAF_CHECK_EQUAL(name.rfind(prefix, 0), 0u);
    CAF_CHECK_EQUAL(name.size(), prefix.size() + 6); // mkdtemp's random part
    struct stat st {};
    CAF_REQUIRE_EQUAL(::stat(s.path().c_str(), &st), 0);
    CAF_CHECK_EQUAL(st.st_mode & 0777, 0700u);
    names.insert(name);
  }
  CAF_CHECK_EQUAL(names.size(), 3u);
  // A folder left by a process that ended (a child that already exited), one of a
  // running process (this one) and a file named like one.
  const pid_t child = ::fork();
  if (child == 0)
    ::_exit(0);
  ::waitpid(child, nullptr, 0);
  const auto tmp = std::filesystem::temp_directory_path();
  const auto dead = tmp / ("pnn-node-" + std::to_string(child) + "-abcdef");
  const auto alive = tmp / ("pnn-node-" + std::to_string(::getpid()) + "-ghijkl");
  std::filesystem::create_directories(dead / "sub");
  write_file_atomic(dead / "latest.pt", "x");
  std::filesystem::create_directories(alive);
  CAF_CHECK_GREATER_OR_EQUAL(scratch_folder::remove_stale(), 1u);
  CAF_CHECK(!std::filesystem::exists(dead));
  CAF_CHECK(std::filesystem::exists(alive));
  std::filesystem::remove_all(alive);
}

CAF_TEST(the steps file keeps a prefix and appends and refuses gaps and foreign files) {
  test::temp_dir dir;
  std::vector<step_record> steps;
  for (int i = 0; i < 7; ++i)
    steps.push_back({0.5 * i, i / 3, i % 3, i, 2.0 / (i + 1), 1e-3 * i});
  const auto file = dir / steps_file_name;
  write_steps_file(file, 0, encode_steps({steps.begin(), steps.begin() + 4}));
  write_steps_file(file, 4, encode_steps(steps, 4));
  auto back = decode_steps(read_steps_file(file), file.string());
  CAF_REQUIRE_EQUAL(back.size(), 7u);
  for (size_t i = 0; i < back.size(); ++i) {
    CAF_CHECK_EQUAL(back[i].time, steps[i].time);
    CAF_CHECK_EQUAL(back[i].epoch, steps[i].epoch);
    CAF_CHECK_EQUAL(back[i].batch, steps[i].batch);
    CAF_CHECK_EQUAL(back[i].step, steps[i].step);
    CAF_CHECK_EQUAL(back[i].loss, steps[i].loss);
    CAF_CHECK_EQUAL(back[i].lr, steps[i].lr);
  }
  CAF_CHECK_EQUAL(decode_steps(read_steps_file(file, 3), "x").size(), 3u);
  // Keeping 2 drops the rest before the append, in a new file: the old one (here
  // kept alive by a second name) is never cut, so a crash before the checkpoint
  // that needs the new records is written leaves the old checkpoint's records whole.
  std::filesystem::create_hard_link(file, dir / "before-branch.bin");
  write_steps_file(file, 2, encode_steps({steps[6]}));
  back = decode_steps(read_steps_file(file), file.string());
  CAF_REQUIRE_EQUAL(back.size(), 3u);
  CAF_CHECK_EQUAL(back[0].step, 0);
  CAF_CHECK_EQUAL(back[1].loss, steps[1].loss);
  CAF_CHECK_EQUAL(back[2].step, 6);
  CAF_CHECK_EQUAL(decode_steps(read_steps_file(dir / "before-branch.bin"), "x").size(), 7u);
  // A gap (keep more than it holds), a torn record, a foreign file, a short read.
  auto refused = [&](auto f, const std::string& says) {
    try {
      f();
      CAF_FAIL("taken, expected: " << says);
    } catch (const pnn::error& e) {
      CAF_CHECK(test::contains(e.what(), says));
      CAF_CHECK(test::contains(e.what(), "steps"));
    }
  };
  refused([&] { write_steps_file(file, 4, encode_steps(steps)); }, "holds 3 steps");
  refused([&] { write_steps_file(file, 3, "12345"); }, "5 bytes");
  refused([&] { decode_steps(std::string(50, 'x'), "peer"); }, "peer");
  refused([&] { read_steps_file(file, 4); }, "holds 3 steps");
  CAF_CHECK_EQUAL(decode_steps(read_steps_file(file), "x").size(), 3u); // unchanged
  pnn::write_file_atomic(dir / "other.bin", "not a steps file");
  refused([&] { write_steps_file(dir / "other.bin", 0, ""); }, "PNNSTEP1");
  refused([&] { read_steps_file(dir / "other.bin"); }, "PNNSTEP1");
  refused([&] { write_steps_file(dir / "new.bin", 1, ""); }, "empty");
}
