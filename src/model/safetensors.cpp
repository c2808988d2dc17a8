#include "moetron/model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "moetron/core/atomic_file.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/input_text.hpp"
#include "moetron/core/temp_files.hpp"

namespace moetron {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

// a * b, or an Error naming `what` when it does not fit in 64 bits.
uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& what) {
  uint64_t r;
  MOETRON_CHECK(!__builtin_mul_overflow(a, b, &r), what << ": size overflows 64 bits");
  return r;
}

uint64_t byte_size(DType dtype, const std::vector<int64_t>& shape, const std::string& what) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    MOETRON_CHECK(d >= 0, what << ": negative dimension in shape " << shape_string(shape));
    n = checked_mul(n, static_cast<uint64_t>(d), what);
  }
  return n;
}

// A non-negative integer from a header field, as uint64 (JSON floats, bools and negatives fail).
uint64_t header_uint(const json& v, const std::string& what) {
  MOETRON_CHECK(v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0),
                what << " must be a non-negative integer, got " << v.dump());
  return v.get<uint64_t>();
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// ---- TensorView -------------------------------------------------------------------------------

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t TensorView::row_bytes() const {
  if (shape.empty()) return nbytes;
  return shape[0] == 0 ? 0 : nbytes / static_cast<size_t>(shape[0]);
}

const void* TensorView::row_data(int64_t first) const {
  int64_t rows = shape.empty() ? 1 : shape[0];
  MOETRON_CHECK(first >= 0 && first <= rows, "tensor " << name << " in " << file << ": row " << first
                                                       << " is outside its " << rows << " rows");
  return static_cast<const uint8_t*>(data) + static_cast<size_t>(first) * row_bytes();
}

Tensor TensorView::as_tensor() const {
  Tensor t;
  t.data = const_cast<void*>(data);  // read-only mapping: weights are inputs, never written
  t.dtype = dtype;
  t.shape = shape;
  t.device = Device::Cpu;
  t.owner = std::const_pointer_cast<SafetensorsFile>(owner);
  return t;
}

// ---- SafetensorsFile --------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {}

SafetensorsFile::~SafetensorsFile() {
  if (base_) munmap(const_cast<uint8_t*>(base_), file_size_);
  if (fd_ >= 0) close(fd_);
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile(path));
  f->map_file();
  f->parse_header();
  return f;
}

void SafetensorsFile::map_file() {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO must not block us
  MOETRON_CHECK(fd_ >= 0, path_ << ": cannot open: " << errno_text());
  struct stat st;
  MOETRON_CHECK(fstat(fd_, &st) == 0, path_ << ": cannot stat: " << errno_text());
  MOETRON_CHECK(S_ISREG(st.st_mode), path_ << ": not a regular file");
  file_size_ = static_cast<uint64_t>(st.st_size);
  MOETRON_CHECK(file_size_ >= 8, path_ << ": truncated safetensors file (" << file_size_
                                       << " bytes; the 8-byte header length is missing)");
  void* p = mmap(nullptr, file_size_, PROT_READ, MAP_SHARED, fd_, 0);
  MOETRON_CHECK(p != MAP_FAILED, path_ << ": cannot mmap " << file_size_ << " bytes: " << errno_text());
  base_ = static_cast<const uint8_t*>(p);
}

void SafetensorsFile::parse_header() {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base_[i];  // little-endian u64
  MOETRON_CHECK(header_len <= kMaxHeaderBytes,
                path_ << ": header length " << header_len << " exceeds the " << kMaxHeaderBytes << "-byte limit");
  MOETRON_CHECK(header_len <= file_size_ - 8, path_ << ": header length " << header_len << " runs past the end of the "
                                                    << file_size_ << "-byte file (truncated?)");
  data_start_ = 8 + header_len;
  const uint64_t data_size = file_size_ - data_start_;

  const char* header_text = reinterpret_cast<const char*>(base_ + 8);
  const json header = parse_json_strict(header_text, header_text + header_len, path_ + ": header");
  MOETRON_CHECK(header.is_object(), path_ << ": header is not a JSON object");

  for (const auto& [name, value] : header.items()) {
    const std::string what = path_ + ": tensor '" + name + "'";
    if (name == "__metadata__") {
      MOETRON_CHECK(value.is_object(), path_ << ": __metadata__ is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        MOETRON_CHECK(v.is_string(), path_ << ": __metadata__ value for '" << k << "' is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    MOETRON_CHECK(value.is_object(), what << ": entry is not a JSON object");
    MOETRON_CHECK(value.contains("dtype") && value["dtype"].is_string(), what << ": missing string field 'dtype'");
    MOETRON_CHECK(value.contains("shape") && value["shape"].is_array(), what << ": missing list field 'shape'");
    MOETRON_CHECK(value.contains("data_offsets") && value["data_offsets"].is_array() &&
                      value["data_offsets"].size() == 2,
                  what << ": missing field 'data_offsets' [begin, end]");
    Entry e;
    e.dtype = parse_dtype(value["dtype"].get<std::string>(), what);
    for (const json& d : value["shape"]) {
      uint64_t dim = header_uint(d, what + " shape entry");
      MOETRON_CHECK(dim <= static_cast<uint64_t>(INT64_MAX), what << ": dimension " << dim << " is too large");
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    e.begin = header_uint(value["data_offsets"][0], what + " data_offsets[0]");
    e.end = header_uint(value["data_offsets"][1], what + " data_offsets[1]");
    MOETRON_CHECK(e.begin <= e.end, what << ": data_offsets [" << e.begin << ", " << e.end << "] run backwards");
    MOETRON_CHECK(e.end <= data_size, what << ": data_offsets [" << e.begin << ", " << e.end
                                           << "] run past the data region of " << data_size << " bytes");
    uint64_t expected = byte_size(e.dtype, e.shape, what);
    MOETRON_CHECK(expected == e.end - e.begin, what << ": shape " << shape_string(e.shape) << " of "
                                                    << dtype_name(e.dtype) << " needs " << expected
                                                    << " bytes but data_offsets span " << e.end - e.begin);
    entries_.emplace(name, std::move(e));
  }

  // No two tensors may share bytes: sorted by start, each non-empty range must begin after the
  // previous one ends (by induction, the furthest end so far).
  std::vector<std::pair<const Entry*, const std::string*>> by_offset;
  for (const auto& [name, e] : entries_)
    if (e.begin != e.end) by_offset.emplace_back(&e, &name);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.first->begin < b.first->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    MOETRON_CHECK(by_offset[i].first->begin >= by_offset[i - 1].first->end,
                  path_ << ": tensors '" << *by_offset[i - 1].second << "' and '" << *by_offset[i].second
                        << "' overlap in the data region");
  }
  // The format indexes every byte of the data region: a gap or trailing bytes mean a header
  // length off by some bytes (shifted, garbage weights) or a damaged file.
  uint64_t covered = 0;
  for (const auto& [e, name] : by_offset) {
    MOETRON_CHECK(e->begin == covered, path_ << ": bytes " << covered << ".." << e->begin
                                             << " of the data region belong to no tensor (before '" << *name
                                             << "'): wrong header length or damaged file");
    covered = e->end;
  }
  MOETRON_CHECK(covered == data_size, path_ << ": the data region holds " << data_size << " bytes but its tensors "
                                            << "cover " << covered << " (trailing bytes: wrong header length or "
                                            << "damaged file)");
}

TensorView SafetensorsFile::get(const std::string& name) const {
  auto it = entries_.find(name);
  MOETRON_CHECK(it != entries_.end(), path_ << ": no tensor '" << name << "'");
  const Entry& e = it->second;
  TensorView v;
  v.name = name;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.data = base_ + data_start_ + e.begin;
  v.nbytes = static_cast<size_t>(e.end - e.begin);
  v.file_offset = data_start_ + e.begin;
  v.file = path_;
  v.owner = shared_from_this();
  return v;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& kv : entries_) out.push_back(kv.first);
  return out;
}

// ---- Checkpoint -------------------------------------------------------------------------------

namespace {

const char* kSingleFile = "model.safetensors";
const char* kIndexFile = "model.safetensors.index.json";

// Shard indexes of the largest checkpoints are a few megabytes.
constexpr uint64_t kMaxIndexBytes = 256u << 20;

json read_json_file(const std::string& path) {
  return parse_json_strict(read_regular_file(path, "the shard index", kMaxIndexBytes), path);
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  MOETRON_CHECK(fs::is_directory(dir), dir << ": not a directory (expected a checkpoint folder)");
  const std::string index_path = (fs::path(dir) / kIndexFile).string();
  if (fs::exists(index_path)) {
    c.sharded_ = true;
    json index = read_json_file(index_path);
    MOETRON_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                  index_path << ": missing object field 'weight_map'");
    std::map<std::string, bool> files;
    for (const auto& [name, file] : index["weight_map"].items()) {
      MOETRON_CHECK(file.is_string(), index_path << ": weight_map entry for '" << name << "' is not a file name");
      std::string f = file.get<std::string>();
      // Shards live in the checkpoint folder itself; a path could reach any file on the machine.
      MOETRON_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..",
                    index_path << ": weight_map entry for '" << name << "' names '" << f
                               << "', not a file in the checkpoint folder");
      c.weight_map_[name] = f;
      files[f] = true;
    }
    for (const auto& kv : files)
      MOETRON_CHECK(fs::exists(fs::path(dir) / kv.first),
                    index_path << ": shard '" << kv.first << "' is listed but does not exist in " << dir);
    return c;
  }
  const std::string single = (fs::path(dir) / kSingleFile).string();
  MOETRON_CHECK(fs::exists(single), dir << ": no " << kSingleFile << " or " << kIndexFile);
  auto file = SafetensorsFile::open(single);
  for (const std::string& name : file->names()) c.weight_map_[name] = kSingleFile;
  c.open_shards_[kSingleFile] = file;
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : weight_map_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile& Checkpoint::shard(const std::string& file) const {
  auto& slot = open_shards_[file];
  if (!slot) slot = SafetensorsFile::open((fs::path(dir_) / file).string());
  return *slot;
}

TensorView Checkpoint::get(const std::string& name) const {
  auto it = weight_map_.find(name);
  MOETRON_CHECK(it != weight_map_.end(), dir_ << ": checkpoint has no tensor '" << name << "'");
  const SafetensorsFile& f = shard(it->second);
  MOETRON_CHECK(f.has(name), dir_ << ": tensor '" << name << "' is listed in " << kIndexFile << " under '"
                                  << it->second << "' but that file does not contain it");
  return f.get(name);
}

TensorView Checkpoint::get_checked(const std::string& name, const std::vector<int64_t>& expected) const {
  TensorView v = get(name);
  MOETRON_CHECK(v.shape == expected, dir_ << ": tensor '" << name << "' has shape " << shape_string(v.shape)
                                          << ", expected " << shape_string(expected));
  return v;
}

uint64_t Checkpoint::data_bytes() const {
  std::map<std::string, bool> files;
  for (const auto& kv : weight_map_) files[kv.second] = true;
  uint64_t total = 0;
  for (const auto& kv : files)
    for (const auto& [name, e] : shard(kv.first).entries())
      if (weight_map_.count(name)) total += e.end - e.begin;
  return total;
}

// ---- writing ----------------------------------------------------------------------------------

uint64_t TensorSource::nbytes() const { return byte_size(dtype, shape, "tensor '" + name + "'"); }

namespace {

constexpr size_t kChunkBytes = 8u << 20;

void stream_tensor(AtomicFileWriter& out, const TensorSource& t, std::vector<uint8_t>& buffer) {
  const uint64_t total = t.nbytes();
  if (t.bytes) {
    out.write(t.bytes, total);
    return;
  }
  MOETRON_ASSERT(t.fill);
  const size_t elem = dtype_size(t.dtype);
  const int64_t per_chunk = static_cast<int64_t>(kChunkBytes / elem);
  const int64_t numel = static_cast<int64_t>(total / elem);
  buffer.resize(kChunkBytes);
  for (int64_t first = 0; first < numel; first += per_chunk) {
    int64_t count = std::min(per_chunk, numel - first);
    t.fill(first, count, buffer.data());
    out.write(buffer.data(), static_cast<size_t>(count) * elem);
  }
}

// The header JSON, padded with spaces to a multiple of 8 so that the data region is aligned.
std::string make_header(const std::vector<TensorSource>& tensors, const SafetensorsMetadata& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSource& t : tensors) {
    MOETRON_CHECK(!t.name.empty() && t.name != "__metadata__", "cannot write a tensor named '" << t.name << "'");
    MOETRON_CHECK(!h.contains(t.name), "tensor '" << t.name << "' is listed twice");
    MOETRON_CHECK(t.bytes || t.fill, "tensor '" << t.name << "' has neither bytes nor a fill function");
    uint64_t n = t.nbytes();
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

uint64_t total_bytes(const std::vector<TensorSource>& tensors) {
  uint64_t total = 0;
  for (const TensorSource& t : tensors) total += t.nbytes();
  return total;
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorSource>& tensors,
                       const SafetensorsMetadata& metadata) {
  const std::string header = make_header(tensors, metadata);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  AtomicFileWriter out(path);
  out.write(len, 8);
  out.write(header.data(), header.size());
  std::vector<uint8_t> buffer;
  for (const TensorSource& t : tensors) stream_tensor(out, t, buffer);
  out.commit();
}

void write_text_file_atomically(const std::string& path, const std::string& text) {
  AtomicFileWriter out(path);
  out.write(text.data(), text.size());
  out.commit();
}

std::vector<std::string> write_sharded_safetensors(const std::string& dir, const std::vector<TensorSource>& tensors,
                                                   uint64_t max_shard_bytes, const SafetensorsMetadata& metadata) {
  MOETRON_CHECK(max_shard_bytes > 0, "the maximum shard size must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  MOETRON_CHECK(!ec, dir << ": cannot create directory: " << ec.message());

  // Greedy: keep tensors in order, start a new shard when the next one would not fit.
  std::vector<std::vector<TensorSource>> shards(1);
  uint64_t in_shard = 0;
  for (const TensorSource& t : tensors) {
    uint64_t n = t.nbytes();
    if (!shards.back().empty() && in_shard + n > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(t);
    in_shard += n;
  }

  const fs::path single = fs::path(dir) / kSingleFile, index_path = fs::path(dir) / kIndexFile;
  if (shards.size() == 1) {
    write_safetensors(single.string(), tensors, metadata);
    fs::remove(index_path, ec);  // a stale index would shadow the new file
    return {kSingleFile};
  }
  std::vector<std::string> written;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    write_safetensors((fs::path(dir) / name).string(), shards[i], metadata);
    for (const TensorSource& t : shards[i]) weight_map[t.name] = name;
    written.push_back(name);
  }
  json index{{"metadata", {{"total_size", total_bytes(tensors)}}}, {"weight_map", weight_map}};
  write_text_file_atomically(index_path.string(), index.dump(2) + "\n");
  fs::remove(single, ec);
  written.push_back(kIndexFile);
  return written;
}

}  // namespace moetron
