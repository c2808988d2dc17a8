// Safetensors: reading memory-mapped checkpoints (one file or sharded with an index) and
// writing them atomically and streaming.
//
// The reader validates the whole header before trusting any of it (sizes, offsets, overlaps,
// shape x dtype = byte range, with overflow-checked arithmetic), so a corrupt or hostile file
// ends in a moetron::Error naming the file and tensor, never in an out-of-bounds read. Tensor
// data is never copied: a view points into the read-only mapping, and callers that need only
// some rows (tensor or expert parallelism) touch only those pages.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moetron/core/dtype.hpp"
#include "moetron/core/tensor.hpp"

namespace moetron {

class SafetensorsFile;

// One tensor of a checkpoint: a read-only view into the mapped file, which it keeps alive.
struct TensorView {
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  uint64_t file_offset = 0;  // of `data` in the file (for pread)
  std::string file;  // the .safetensors file it lives in (for messages)
  std::shared_ptr<const SafetensorsFile> owner;

  int64_t numel() const;
  // Bytes from row `first` (first dimension) for `count` rows; rows of a 1-D tensor are elements.
  const void* row_data(int64_t first) const;
  size_t row_bytes() const;
  // A host Tensor over the same memory (no copy). The memory is mapped read-only: writing
  // through it faults. The Tensor keeps the file mapped.
  Tensor as_tensor() const;
};

// "[4, 64]": for messages.
std::string shape_string(const std::vector<int64_t>& shape);

// One .safetensors file, memory-mapped and validated on open.
class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t begin;  // byte offsets into the data region, validated
    uint64_t end;
  };

  // Maps `path` and validates its header; throws Error on any inconsistency.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  TensorView get(const std::string& name) const;  // throws Error naming tensor and file
  std::vector<std::string> names() const;         // sorted
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }

  // Limits on the header, which is read into memory before anything else is checked.
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

 private:
  explicit SafetensorsFile(std::string path);
  void map_file();
  void parse_header();

  std::string path_;
  int fd_ = -1;
  const uint8_t* base_ = nullptr;  // the whole file, mapped read-only
  uint64_t file_size_ = 0;
  uint64_t data_start_ = 0;  // 8 + header length
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face checkpoint directory: `model.safetensors`, or shards listed by
// `model.safetensors.index.json` (opened lazily, on the first tensor read from each).
// Not thread-safe: one loader thread reads a Checkpoint.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  bool sharded() const { return sharded_; }
  bool has(const std::string& name) const { return weight_map_.count(name) != 0; }
  std::vector<std::string> names() const;  // sorted
  TensorView get(const std::string& name) const;
  // As get(), and the shape must be `expected` (the message shows both shapes).
  TensorView get_checked(const std::string& name, const std::vector<int64_t>& expected) const;
  // Total bytes of tensor data across all files (opens every shard).
  uint64_t data_bytes() const;

 private:
  const SafetensorsFile& shard(const std::string& file) const;

  std::string dir_;
  bool sharded_ = false;
  std::map<std::string, std::string> weight_map_;  // tensor name -> file name inside dir_
  mutable std::map<std::string, std::shared_ptr<const SafetensorsFile>> open_shards_;
};

// ---- writing ------------------------------------------------------------------------------

// A tensor to write: its bytes come either from memory (`bytes`, numel x dtype size of them) or
// from `fill`, called for consecutive element ranges so that no tensor is ever whole in memory.
struct TensorSource {
  using Fill = std::function<void(int64_t first_element, int64_t count, void* dst)>;
  std::string name;
  DType dtype = DType::BF16;
  std::vector<int64_t> shape;
  const void* bytes = nullptr;
  Fill fill;

  uint64_t nbytes() const;  // overflow-checked
};

using SafetensorsMetadata = std::map<std::string, std::string>;

// Writes one safetensors file atomically (moetron/core/atomic_file.hpp: temp file, fsync, rename
// over `path`, fsync of the directory).
// The data is streamed in chunks; peak memory is one chunk, whatever the file size.
void write_safetensors(const std::string& path, const std::vector<TensorSource>& tensors,
                       const SafetensorsMetadata& metadata = {{"format", "pt"}});

// Writes `dir/model.safetensors` when everything fits in `max_shard_bytes`, else
// `dir/model-0000k-of-0000n.safetensors` shards (tensors kept whole, in order; a tensor larger
// than the limit gets a shard of its own) plus `model.safetensors.index.json`, written last.
// A stale file of the other layout is removed. Returns the file names written (index last).
std::vector<std::string> write_sharded_safetensors(const std::string& dir, const std::vector<TensorSource>& tensors,
                                                   uint64_t max_shard_bytes,
                                                   const SafetensorsMetadata& metadata = {{"format", "pt"}});

// Writes a small text file atomically (as write_safetensors), e.g. config.json.
void write_text_file_atomically(const std::string& path, const std::string& text);

}  // namespace moetron
