#include <pnn/experiments/holder_file.hpp>

#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/training/parameters.hpp>

namespace pnn {

namespace {

constexpr char magic_v1[8] = {'P', 'N', 'N', 'H', 'O', 'L', 'D', '1'};
constexpr char magic[8] = {'P', 'N', 'N', 'H', 'O', 'L', 'D', '2'};

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_u64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + static_cast<size_t>(i)]))
      << (8 * i);
  return v;
}

} // namespace

std::string holder_file_bytes(const holder_checkpoint& c) {
  const auto& params = c.params;
  std::string out(magic, sizeof magic);
  put_u64(out, params.version);
  put_u64(out, params.layout);
  put_u64(out, params.count);
  out.append(params.bytes.begin(), params.bytes.end());
  put_u64(out, c.optimizer.size());
  out += c.optimizer;
  put_u64(out, c.optimizer_state.size());
  out += c.optimizer_state;
  return out;
}

void write_holder_file(const std::filesystem::path& file, const holder_checkpoint& c) {
  pnn::write_file_atomic(file, holder_file_bytes(c));
}

holder_checkpoint read_holder_file(const std::filesystem::path& file) {
  const auto text = pnn::read_text_file(file);
  auto bad = [&](const std::string& why) {
    return pnn::error(error_code::invalid_argument, file.string() + ": " + why);
  };
  const bool v1 = text.size() >= 32 && text.compare(0, 8, magic_v1, 8) == 0;
  if (text.size() < 32 || (!v1 && text.compare(0, sizeof magic, magic, sizeof magic) != 0))
    throw bad("not a parameter holder file (expected PNNHOLD2 and a 32-byte header)");
  holder_checkpoint c;
  param_blob& b = c.params;
  b.version = get_u64(text, 8);
  b.layout = get_u64(text, 16);
  b.count = get_u64(text, 24);
  const size_t rest = text.size() - 32;
  if (b.count > rest / sizeof(float) || (v1 && rest != b.count * sizeof(float)))
    throw bad("truncated or padded: " + std::to_string(rest) + " bytes after the header for "
              + std::to_string(b.count) + " floats");
  size_t at = 32 + b.count * sizeof(float);
  b.bytes.assign(text.begin() + 32, text.begin() + static_cast<std::ptrdiff_t>(at));
  // The optimizer's name and state: a length each, then its bytes.
  auto section = [&](const char* what) {
    if (text.size() - at < 8)
      throw bad(std::string("truncated: no length of the ") + what);
    const uint64_t n = get_u64(text, at);
    at += 8;
    if (n > text.size() - at)
      throw bad(std::string("truncated: the ") + what + " claims " + std::to_string(n)
                + " bytes, " + std::to_string(text.size() - at) + " left");
    std::string s = text.substr(at, n);
    at += n;
    return s;
  };
  if (!v1) {
    c.optimizer = section("optimizer name");
    c.optimizer_state = section("optimizer state");
    if (at != text.size())
      throw bad("padded: " + std::to_string(text.size() - at) + " bytes after the optimizer state");
  }
  auto why = training::check_floats(b.bytes, b.count);
  if (!why.empty())
    throw bad(why);
  return c;
}

} // namespace pnn
