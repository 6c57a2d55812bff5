#include <pnn/training/dataset.hpp>

#include <pnn/error.hpp>
#include <pnn/training/random.hpp>
#include <pnn/training/spec.hpp>

#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <tuple>

namespace fs = std::filesystem;

namespace pnn::training {

namespace {

// Files above this are refused before they are read: the largest real dataset
// file (CIFAR-10 batches, MNIST images) is ~47 MB.
constexpr size_t max_file_bytes = size_t{1} << 32;

[[noreturn]] void fail(error_code code, const fs::path& file, const std::string& what) {
  throw pnn::error(code, file.string() + ": " + what);
}

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

/// A file read through zlib (gzip or raw), straight into the caller's memory: no
/// temporary copy of a 47 MB image file on top of the tensor it fills.
class gz_file {
public:
  explicit gz_file(const fs::path& file) : file_(file) {
    std::error_code ec;
    if (!fs::exists(file, ec))
      fail(error_code::file_not_found, file, "file not found");
    if (fs::is_directory(file, ec))
      fail(error_code::malformed_file, file, "is a folder, expected a file");
    in_ = gzopen(file.c_str(), "rb");
    if (in_ == nullptr)
      fail(error_code::io_error, file, std::string{"cannot open: "} + std::strerror(errno));
    gzbuffer(in_, 1 << 18);
    disk_bytes_ = static_cast<size_t>(fs::file_size(file, ec));
    if (ec)
      disk_bytes_ = max_file_bytes;
    direct_ = gzdirect(in_) == 1;
  }
  ~gz_file() {
    if (in_ != nullptr)
      gzclose_r(in_);
  }
  gz_file(const gz_file&) = delete;
  gz_file& operator=(const gz_file&) = delete;

  /// Reads up to `n` bytes; fewer only at the end of the data.
  size_t read(void* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      auto chunk = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
      int r = gzread(in_, static_cast<char*>(dst) + got, chunk);
      if (r < 0)
        corrupt();
      if (r == 0)
        break;
      got += static_cast<size_t>(r);
    }
    return got;
  }

  /// Reads and counts what is left (capped just above max_file_bytes).
  size_t skip_rest() {
    char buf[1 << 16];
    size_t total = 0;
    while (total <= max_file_bytes) {
      auto n = read(buf, sizeof buf);
      total += n;
      if (n < sizeof buf)
        break;
    }
    return total;
  }

  /// Throws if zlib saw a truncated or corrupt stream.
  void check() {
    int err = Z_OK;
    gzerror(in_, &err);
    if (err != Z_OK)
      corrupt();
  }

  /// Closes the file, throwing on a stream error found at the end.
  void close() {
    check();
    int closed = gzclose_r(in_);
    in_ = nullptr;
    if (closed != Z_OK)
      fail(error_code::malformed_file, file_, "truncated or corrupt gzip data (at its end)");
  }

  const fs::path& path() const {
    return file_;
  }

  /// The most data bytes this file can hold: its size when it is not compressed,
  /// deflate's largest ratio (1032:1) times its size when it is gzip. Headers that
  /// promise more are refused before anything is allocated for them.
  bool compressed() const {
    return !direct_;
  }

  size_t max_data_bytes() const {
    return direct_ ? disk_bytes_ : disk_bytes_ * 1032 + 1024;
  }

private:
  [[noreturn]] void corrupt() {
    int err = 0;
    std::string msg = gzerror(in_, &err);
    fail(error_code::malformed_file, file_,
         "truncated or corrupt gzip data (" + (msg.empty() ? std::string{"read error"} : msg)
           + ")");
  }

  fs::path file_;
  gzFile in_ = nullptr;
  size_t disk_bytes_ = 0;
  bool direct_ = true;
};

/// Whole file content, gunzipped when it is gzip.
std::vector<uint8_t> read_file(const fs::path& file) {
  gz_file in{file};
  std::vector<uint8_t> out;
  constexpr size_t chunk = 1 << 20;
  for (;;) {
    if (out.size() > max_file_bytes)
      fail(error_code::malformed_file, file, "larger than 4 GiB, not a dataset file");
    size_t old = out.size();
    out.resize(old + chunk);
    auto n = in.read(out.data() + old, chunk);
    out.resize(old + n);
    if (n < chunk)
      break;
  }
  in.close();
  return out;
}

/// Reads and checks an idx header (magic for unsigned bytes with `ndims`
/// dimensions); returns the dimensions.
std::vector<int64_t> read_idx_header(gz_file& in, uint8_t ndims) {
  const auto& file = in.path();
  uint8_t head[4 + 4 * 3] = {};
  const size_t header = 4 + 4 * size_t{ndims};
  const size_t got = in.read(head, header);
  if (got < 4) {
    in.check();
    fail(error_code::malformed_file, file,
         "truncated: " + std::to_string(got) + " bytes, expected an idx header");
  }
  if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != ndims) {
    char text[16];
    std::snprintf(text, sizeof text, "0x%02x%02x%02x%02x", head[0], head[1], head[2], head[3]);
    fail(error_code::malformed_file, file,
         std::string{"wrong magic number "} + text + ", expected 0x000008"
           + (ndims == 3 ? "03 (idx3 unsigned bytes)" : "01 (idx1 unsigned bytes)"));
  }
  if (got < header) {
    in.check();
    fail(error_code::malformed_file, file,
         "truncated: header needs " + std::to_string(header) + " bytes, file has "
           + std::to_string(got));
  }
  std::vector<int64_t> dims;
  uint64_t payload = 1;
  for (uint8_t i = 0; i < ndims; ++i) {
    uint32_t d = big_endian_u32(head + 4 + 4 * i);
    if (d == 0 || d > (1u << 30))
      fail(error_code::malformed_file, file,
           "dimension " + std::to_string(i) + " is " + std::to_string(d) + ", expected 1..2^30");
    payload *= d;
    if (payload > max_file_bytes)
      fail(error_code::malformed_file, file, "dimensions describe more than 4 GiB of data");
    dims.push_back(d);
  }
  const size_t room = in.max_data_bytes() - std::min(header, in.max_data_bytes());
  if (payload > room)
    fail(error_code::malformed_file, file,
         "truncated: header promises " + std::to_string(payload) + " data bytes, "
           + (in.compressed() ? "gzip data of this size cannot hold more than " : "file has ")
           + std::to_string(room));
  return dims;
}

/// Reads exactly `size` payload bytes into `dst` and checks nothing follows.
void read_idx_payload(gz_file& in, void* dst, size_t size) {
  const auto& file = in.path();
  const size_t got = in.read(dst, size);
  if (got < size) {
    in.check();
    fail(error_code::malformed_file, file,
         "truncated: header promises " + std::to_string(size) + " data bytes, file has "
           + std::to_string(got));
  }
  const size_t extra = in.skip_rest();
  in.close();
  if (extra > 0)
    fail(error_code::malformed_file, file,
         "trailing data: header promises " + std::to_string(size) + " data bytes, file has "
           + std::to_string(size + extra));
}

torch::Tensor check_labels(torch::Tensor labels, int64_t num_classes, const fs::path& file) {
  if (labels.numel() == 0)
    return labels;
  auto max_label = labels.max().item<int64_t>();
  if (max_label >= num_classes)
    fail(error_code::malformed_file, file,
         "label " + std::to_string(max_label) + " out of range, expected 0.."
           + std::to_string(num_classes - 1));
  return labels;
}

fs::path find_variant(const fs::path& dir, const std::string& base) {
  for (const char* suffix : {"", ".gz"}) {
    auto p = dir / (base + suffix);
    std::error_code ec;
    if (fs::exists(p, ec))
      return p;
  }
  return dir / (base + ".gz");
}

const std::vector<std::string> fashion_classes = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                  "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                  "Bag",         "Ankle boot"};
const std::vector<std::string> digit_classes = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
const std::vector<std::string> cifar_classes = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

const fs::path fashion_default_dir = "/usr/share/datasets/fashion-mnist";

bool mnist_files_found(const fs::path& dir) {
  std::error_code ec;
  for (const char* base : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    if (!fs::exists(find_variant(dir, base), ec))
      return false;
  return true;
}

bool cifar_files_found(const fs::path& dir) {
  std::error_code ec;
  for (int i = 1; i <= 5; ++i)
    if (!fs::exists(dir / ("data_batch_" + std::to_string(i) + ".bin"), ec))
      return false;
  return fs::exists(dir / "test_batch.bin", ec);
}

} // namespace

dataset load_idx(const fs::path& images_file, const fs::path& labels_file, std::string name,
                 std::vector<std::string> classes) {
  gz_file images{images_file};
  auto dims = read_idx_header(images, 3);
  gz_file labels{labels_file};
  auto label_dims = read_idx_header(labels, 1);
  if (label_dims[0] != dims[0])
    fail(error_code::malformed_file, labels_file,
         "holds " + std::to_string(label_dims[0]) + " labels but " + images_file.string()
           + " holds " + std::to_string(dims[0]) + " images");
  dataset d;
  d.name = std::move(name);
  d.classes = std::move(classes);
  d.images = torch::empty({dims[0], 1, dims[1], dims[2]}, torch::kUInt8);
  read_idx_payload(images, d.images.data_ptr<uint8_t>(), static_cast<size_t>(d.images.numel()));
  std::vector<uint8_t> label_bytes(static_cast<size_t>(dims[0]));
  read_idx_payload(labels, label_bytes.data(), label_bytes.size());
  d.labels = torch::empty({dims[0]}, torch::kInt64);
  auto* out = d.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < dims[0]; ++i)
    out[i] = label_bytes[static_cast<size_t>(i)];
  check_labels(d.labels, d.num_classes(), labels_file);
  return d;
}

dataset_pair load_mnist_dir(const fs::path& dir, std::string name,
                            std::vector<std::string> classes) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(error_code::file_not_found, dir, "data folder not found");
  dataset_pair result;
  result.train = std::make_shared<dataset>(load_idx(find_variant(dir, "train-images-idx3-ubyte"),
                                                    find_variant(dir, "train-labels-idx1-ubyte"),
                                                    name, classes));
  result.test = std::make_shared<dataset>(load_idx(find_variant(dir, "t10k-images-idx3-ubyte"),
                                                   find_variant(dir, "t10k-labels-idx1-ubyte"),
                                                   name + "-test", classes));
  return result;
}

dataset load_cifar10_files(const std::vector<fs::path>& files, std::string name,
                           std::vector<std::string> classes) {
  constexpr size_t pixels = 3 * 32 * 32;
  constexpr size_t record = 1 + pixels;
  std::vector<std::vector<uint8_t>> contents;
  int64_t total = 0;
  for (const auto& f : files) {
    auto bytes = read_file(f);
    if (bytes.empty() || bytes.size() % record != 0)
      fail(error_code::malformed_file, f,
           "size " + std::to_string(bytes.size())
             + " bytes is not a whole number of 3073-byte CIFAR-10 records");
    total += static_cast<int64_t>(bytes.size() / record);
    contents.push_back(std::move(bytes));
  }
  dataset d;
  d.name = std::move(name);
  d.classes = std::move(classes);
  d.images = torch::empty({total, 3, 32, 32}, torch::kUInt8);
  d.labels = torch::empty({total}, torch::kInt64);
  auto* img = d.images.data_ptr<uint8_t>();
  auto* lab = d.labels.data_ptr<int64_t>();
  int64_t i = 0;
  for (size_t f = 0; f < contents.size(); ++f) {
    const auto& bytes = contents[f];
    for (size_t off = 0; off < bytes.size(); off += record, ++i) {
      if (bytes[off] >= d.classes.size())
        fail(error_code::malformed_file, files[f],
             "record " + std::to_string(off / record) + " has label " + std::to_string(bytes[off])
               + ", expected 0.." + std::to_string(d.classes.size() - 1));
      lab[i] = bytes[off];
      std::memcpy(img + static_cast<size_t>(i) * pixels, bytes.data() + off + 1, pixels);
    }
  }
  return d;
}

dataset_pair load_cifar10_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(error_code::file_not_found, dir,
         "CIFAR-10 folder not found (expected data_batch_1..5.bin and test_batch.bin)");
  auto classes = cifar_classes;
  std::ifstream meta(dir / "batches.meta.txt");
  if (meta) {
    std::vector<std::string> names;
    for (std::string line; std::getline(meta, line);)
      if (!line.empty())
        names.push_back(line);
    if (names.size() == 10)
      classes = names;
  }
  std::vector<fs::path> train_files;
  for (int i = 1; i <= 5; ++i)
    train_files.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
  dataset_pair result;
  result.train = std::make_shared<dataset>(load_cifar10_files(train_files, "cifar10", classes));
  result.test = std::make_shared<dataset>(
    load_cifar10_files({dir / "test_batch.bin"}, "cifar10-test", classes));
  return result;
}

dataset_pair make_synthetic(const synthetic_options& o) {
  if (o.train_size <= 0 || o.test_size < 0 || o.channels <= 0 || o.height <= 0 || o.width <= 0
      || o.num_classes < 2)
    throw pnn::error(error_code::invalid_argument,
                     "synthetic dataset: sizes must be positive and classes >= 2");
  const int64_t pixels = o.channels * o.height * o.width;
  rng gen{o.seed};
  std::vector<std::vector<uint8_t>> prototypes(static_cast<size_t>(o.num_classes));
  for (auto& p : prototypes) {
    p.resize(static_cast<size_t>(pixels));
    for (auto& v : p)
      v = static_cast<uint8_t>(uniform_below(gen, 256));
  }
  auto noise = static_cast<uint64_t>(std::max(0.0, o.noise));
  auto make = [&](int64_t n, std::string name) {
    auto d = std::make_shared<dataset>();
    d->name = std::move(name);
    for (int64_t c = 0; c < o.num_classes; ++c)
      d->classes.push_back("class " + std::to_string(c));
    d->images = torch::empty({n, o.channels, o.height, o.width}, torch::kUInt8);
    d->labels = torch::empty({n}, torch::kInt64);
    auto* img = d->images.data_ptr<uint8_t>();
    auto* lab = d->labels.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      auto label = static_cast<int64_t>(uniform_below(gen, static_cast<uint64_t>(o.num_classes)));
      lab[i] = label;
      const auto& proto = prototypes[static_cast<size_t>(label)];
      for (int64_t j = 0; j < pixels; ++j) {
        int64_t v = proto[static_cast<size_t>(j)];
        if (noise > 0)
          v +=
            static_cast<int64_t>(uniform_below(gen, 2 * noise + 1)) - static_cast<int64_t>(noise);
        img[i * pixels + j] = static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
      }
    }
    return d;
  };
  dataset_pair result;
  result.train = make(o.train_size, "synthetic");
  result.test = make(o.test_size, "synthetic-test");
  return result;
}

dataset_ptr take_first(const dataset_ptr& d, int64_t n) {
  if (n <= 0 || n > d->size())
    throw pnn::error(error_code::invalid_argument,
                     "--subset " + std::to_string(n) + ": expected 1.." + std::to_string(d->size())
                       + " (the training set of " + d->name + ")");
  if (n == d->size())
    return d;
  auto view = std::make_shared<dataset>(*d);
  view->images = d->images.narrow(0, 0, n);
  view->labels = d->labels.narrow(0, 0, n);
  return view;
}

std::vector<dataset_info> list_datasets(const fs::path& data_dir) {
  std::vector<dataset_info> result;
  auto fashion_dir = data_dir.empty() ? fashion_default_dir : data_dir;
  result.push_back({"fashion-mnist", "Fashion-MNIST, 60,000 + 10,000 grey 28x28 images",
                    fashion_default_dir, mnist_files_found(fashion_dir)});
  result.push_back({"mnist",
                    "MNIST digits in idx format, from --data-dir",
                    {},
                    !data_dir.empty() && mnist_files_found(data_dir)});
  result.push_back({"cifar10",
                    "CIFAR-10 binary batches, 50,000 + 10,000 colour 32x32, from --data-dir",
                    {},
                    !data_dir.empty() && cifar_files_found(data_dir)});
  result.push_back(
    {"synthetic", "generated, learnable: 1x28x28, 10 classes, 2,000 + 500", {}, true});
  result.push_back(
    {"synthetic-cifar", "generated, learnable: 3x32x32, 10 classes, 2,000 + 500", {}, true});
  return result;
}

namespace {

/// "synthetic[-cifar][:train=N,test=N,noise=X,seed=S,classes=K]"
synthetic_options synthetic_from_name(const std::string& name) {
  auto s = spec::parse(name, "--dataset");
  synthetic_options o;
  if (s.name == "synthetic-cifar") {
    o.channels = 3;
    o.height = o.width = 32;
  } else if (s.name != "synthetic") {
    throw pnn::error(
      error_code::invalid_argument,
      "unknown dataset '" + name
        + "': expected fashion-mnist, mnist, cifar10, synthetic or synthetic-cifar");
  }
  // Counts are checked as numbers before they become integers (1e300 or nan from a
  // peer would not fit).
  auto count = [&](const char* key, double fallback, double low, double high) {
    const double v = s.take_number(key, fallback);
    if (!(v >= low && v <= high))
      throw pnn::error(error_code::invalid_argument,
                       "--dataset " + name + ": " + key + " expected " + std::to_string(int64_t(low))
                         + ".." + std::to_string(int64_t(high)));
    return static_cast<int64_t>(v);
  };
  o.train_size = count("train", static_cast<double>(o.train_size), 1, 1000000);
  o.test_size = count("test", static_cast<double>(o.test_size), 0, 1000000);
  o.noise = s.take_number("noise", o.noise);
  if (!(o.noise >= 0 && o.noise <= 255))
    throw pnn::error(error_code::invalid_argument,
                     "--dataset " + name + ": noise expected 0..255");
  o.seed = static_cast<uint64_t>(count("seed", static_cast<double>(o.seed), 0, 9.0e15));
  o.num_classes = count("classes", static_cast<double>(o.num_classes), 2, 1000);
  s.expect_consumed();
  return o;
}

/// What a dataset will take in memory when that is known before loading it (the
/// generated ones: a peer's name alone could ask for gigabytes); 0 when not.
int64_t planned_bytes(const std::string& name) {
  if (name.rfind("synthetic", 0) != 0)
    return 0;
  const auto o = synthetic_from_name(name);
  const int64_t sample = o.channels * o.height * o.width + 8; // uint8 pixels, int64 label
  return (o.train_size + o.test_size) * sample;
}

} // namespace

dataset_pair load_dataset(const std::string& name, const fs::path& data_dir, int64_t subset) {
  dataset_pair result;
  if (name == "fashion-mnist") {
    result =
      load_mnist_dir(data_dir.empty() ? fashion_default_dir : data_dir, name, fashion_classes);
  } else if (name == "mnist") {
    if (data_dir.empty())
      throw pnn::error(error_code::invalid_argument,
                       "--dataset mnist needs --data-dir DIR holding the MNIST idx files");
    result = load_mnist_dir(data_dir, name, digit_classes);
  } else if (name == "cifar10") {
    if (data_dir.empty())
      throw pnn::error(error_code::invalid_argument,
                       "--dataset cifar10 needs --data-dir DIR holding data_batch_1..5.bin and "
                       "test_batch.bin");
    result = load_cifar10_dir(data_dir);
  } else if (name.rfind("synthetic", 0) == 0) {
    result = make_synthetic(synthetic_from_name(name));
  } else {
    throw pnn::error(error_code::invalid_argument,
                     "unknown dataset '" + name
                       + "': expected fashion-mnist, mnist, cifar10, synthetic or synthetic-cifar");
  }
  if (subset > 0)
    result.train = take_first(result.train, subset);
  else if (subset < 0)
    throw pnn::error(error_code::invalid_argument,
                     "--subset " + std::to_string(subset) + ": expected a positive count");
  return result;
}

int64_t dataset_bytes(const dataset& d) {
  int64_t n = 0;
  for (const auto* t : {&d.images, &d.labels})
    if (t->defined())
      n += static_cast<int64_t>(t->nbytes());
  return n;
}

namespace {

/// shared_dataset's cache: one entry per (name, data_dir, subset).
struct dataset_cache {
  using key_type = std::tuple<std::string, std::string, int64_t>;
  struct entry {
    std::shared_future<dataset_pair> value;
    int64_t bytes = 0; ///< 0 while loading
    uint64_t used = 0; ///< tick of the last ask
  };
  std::mutex mtx;
  std::map<key_type, entry> entries;
  uint64_t tick = 0;
  int64_t limit = 0;
  std::string flag = "the dataset cache limit";

  int64_t total() const {
    int64_t t = 0;
    for (const auto& [k, e] : entries)
      t += e.bytes;
    return t;
  }

  /// Drops loaded entries no job holds (the cache's copy is the only one), least
  /// recently used first, until the cache is within its limit. Caller holds mtx.
  void trim(const key_type& keep) {
    while (limit > 0 && total() > limit) {
      auto victim = entries.end();
      for (auto i = entries.begin(); i != entries.end(); ++i) {
        if (i->first == keep || i->second.bytes == 0)
          continue;
        const auto& pair = i->second.value.get();
        if (pair.train.use_count() > 1 || (pair.test && pair.test.use_count() > 1))
          continue; // a job trains on it
        if (victim == entries.end() || i->second.used < victim->second.used)
          victim = i;
      }
      if (victim == entries.end())
        return; // everything left is in use
      entries.erase(victim);
    }
  }
};

dataset_cache& cache() {
  static dataset_cache c;
  return c;
}

} // namespace

void set_dataset_cache_limit(int64_t bytes, std::string flag) {
  auto& c = cache();
  std::lock_guard<std::mutex> guard{c.mtx};
  c.limit = std::max<int64_t>(0, bytes);
  c.flag = std::move(flag);
}

int64_t dataset_cache_bytes() {
  auto& c = cache();
  std::lock_guard<std::mutex> guard{c.mtx};
  return c.total();
}

dataset_pair shared_dataset(const std::string& name, const fs::path& data_dir, int64_t subset) {
  auto& c = cache();
  const dataset_cache::key_type key{name, data_dir.string(), subset};
  std::shared_future<dataset_pair> entry;
  std::promise<dataset_pair> mine;
  bool load = false;
  {
    std::lock_guard<std::mutex> guard{c.mtx};
    auto i = c.entries.find(key);
    if (i == c.entries.end()) {
      entry = mine.get_future().share();
      c.entries.emplace(key, dataset_cache::entry{entry, 0, ++c.tick});
      load = true;
    } else {
      entry = i->second.value;
      i->second.used = ++c.tick;
    }
  }
  if (load) {
    try {
      if (const auto planned = planned_bytes(name); planned > 0) {
        std::lock_guard<std::mutex> guard{c.mtx};
        if (c.limit > 0 && planned > c.limit)
          throw pnn::error(error_code::invalid_argument,
                           "dataset " + name + " would take " + std::to_string(planned >> 20)
                             + " MB, over " + c.flag + " of " + std::to_string(c.limit >> 20)
                             + " MB");
      }
      auto pair = load_dataset(name, data_dir, subset);
      const int64_t bytes = dataset_bytes(*pair.train) + (pair.test ? dataset_bytes(*pair.test) : 0);
      {
        std::lock_guard<std::mutex> guard{c.mtx};
        if (c.limit > 0 && bytes > c.limit)
          throw pnn::error(error_code::invalid_argument,
                           "dataset " + name + " takes " + std::to_string(bytes >> 20)
                             + " MB, over " + c.flag + " of " + std::to_string(c.limit >> 20)
                             + " MB");
        c.entries.at(key).bytes = bytes;
        mine.set_value(std::move(pair));
        c.trim(key);
      }
    } catch (...) {
      // Do not cache failures: the next caller tries again (e.g. after a fix).
      {
        std::lock_guard<std::mutex> guard{c.mtx};
        c.entries.erase(key);
      }
      mine.set_exception(std::current_exception());
    }
  }
  return entry.get();
}

} // namespace pnn::training
