#include <pnn/experiments/holder_file.hpp>

#include <pnn/error.hpp>
#include <pnn/files.hpp>
#include <pnn/training/parameters.hpp>

namespace pnn {

namespace {

constexpr char magic[8] = {'P', 'N', 'N', 'H', 'O', 'L', 'D', '1'};

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

std::string holder_file_bytes(const param_blob& params) {
  std::string out(magic, sizeof magic);
  put_u64(out, params.version);
  put_u64(out, params.layout);
  put_u64(out, params.count);
  out.append(params.bytes.begin(), params.bytes.end());
  return out;
}

void write_holder_file(const std::filesystem::path& file, const param_blob& params) {
  pnn::write_file_atomic(file, holder_file_bytes(params));
}

param_blob read_holder_file(const std::filesystem::path& file) {
  const auto text = pnn::read_text_file(file);
  auto bad = [&](const std::string& why) {
    return pnn::error(error_code::invalid_argument, file.string() + ": " + why);
  };
  if (text.size() < 32 || text.compare(0, sizeof magic, magic, sizeof magic) != 0)
    throw bad("not a parameter holder file (expected PNNHOLD1 and a 32-byte header)");
  param_blob b;
  b.version = get_u64(text, 8);
  b.layout = get_u64(text, 16);
  b.count = get_u64(text, 24);
  if (b.count > (text.size() - 32) / sizeof(float) || text.size() - 32 != b.count * sizeof(float))
    throw bad("truncated or padded: " + std::to_string(text.size() - 32) + " bytes of values for "
              + std::to_string(b.count) + " floats");
  b.bytes.assign(text.begin() + 32, text.end());
  auto why = training::check_floats(b.bytes, b.count);
  if (!why.empty())
    throw bad(why);
  return b;
}

} // namespace pnn
