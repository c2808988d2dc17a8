// A small, checked layer over the HDF5 C API: move-only handles that close themselves, and a
// File that writes and reads the few shapes Moetron stores (numeric arrays, string arrays,
// scalar attributes). Every call is checked; HDF5's own error printing is silenced while this
// layer works, and a failure becomes a moetron::Error naming the file, the object and HDF5's
// innermost reason. Shared by the results and hardware-profile files.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moetron::h5 {

using Id = int64_t;  // hid_t, without pulling <hdf5.h> into every includer

// The element types we store. Little-endian on disk, native in memory.
enum class Type { Int8, Int32, Int64, Float32, Float64 };
const char* type_name(Type t);  // "int8", "int32", ...

template <class T> constexpr Type type_of();
template <> constexpr Type type_of<int8_t>() { return Type::Int8; }
template <> constexpr Type type_of<int32_t>() { return Type::Int32; }
template <> constexpr Type type_of<int64_t>() { return Type::Int64; }
template <> constexpr Type type_of<float>() { return Type::Float32; }
template <> constexpr Type type_of<double>() { return Type::Float64; }

// Owns one hid_t and closes it with the matching H5?close. Closing is checked by close();
// the destructor closes quietly (it runs while unwinding from an earlier error).
class Handle {
 public:
  using Closer = int (*)(Id);
  Handle() = default;
  Handle(Id id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept;
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  Id get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void close(const std::string& what);  // throws Error (with `what`) when HDF5 fails to close

 private:
  void release_quietly() noexcept;
  Id id_ = -1;
  Closer closer_ = nullptr;
};

// A dataset being filled piecewise along its first dimension (e.g. logits, request by request,
// without assembling one huge buffer).
class RowWriter {
 public:
  RowWriter(Handle dataset, std::string where, Type type, std::vector<int64_t> dims);
  // Writes `rows` full rows starting at `first_row`; `data` holds rows * row_elements() values.
  void write_rows(int64_t first_row, int64_t rows, const void* data);
  int64_t row_elements() const;
  void close();

 private:
  Handle dataset_;
  std::string where_;  // "FILE:/dataset", for messages
  Type type_;
  std::vector<int64_t> dims_;
};

// An owned file descriptor (closed quietly on destruction), movable.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

class File {
 public:
  // Truncates an existing file. The file is built in memory (HDF5 core driver) and written to
  // `path` by close():
  // HDF5 1.10 cannot close a file whose flush failed (a full disk left it crashing at exit),
  // so every disk write is ours, checked, and a failure leaves nothing of HDF5 open.
  static File create(const std::string& path);
  static File open_read(const std::string& path);
  File(File&&) = default;
  File& operator=(File&&) = default;

  const std::string& path() const { return path_; }
  void create_group(const std::string& name);  // "/requests"
  bool exists(const std::string& name) const;  // a link of that path exists
  bool has_attribute(const std::string& object, const std::string& name) const;  // object must exist

  // Datasets. `dims` empty means one dimension of data.size() elements.
  template <class T>
  void write(const std::string& name, const std::vector<T>& data, std::vector<int64_t> dims = {}) {
    if (dims.empty()) dims = {static_cast<int64_t>(data.size())};
    write_raw(name, type_of<T>(), data.data(), dims);
  }
  void write_raw(const std::string& name, Type type, const void* data,
                 const std::vector<int64_t>& dims);
  void write_strings(const std::string& name, const std::vector<std::string>& values);
  RowWriter create_rows(const std::string& name, Type type, const std::vector<int64_t>& dims);

  // Scalar attributes on a group or dataset ("/" for the file itself).
  void set_attribute(const std::string& object, const std::string& name, const std::string& value);
  void set_attribute(const std::string& object, const std::string& name, double value);
  void set_attribute(const std::string& object, const std::string& name, int64_t value);

  // Reading: the stored element type must be exactly T (no silent conversion).
  template <class T>
  std::vector<T> read(const std::string& name) const {
    std::vector<T> out(static_cast<size_t>(element_count(name)));
    read_raw(name, type_of<T>(), out.data());
    return out;
  }
  std::vector<int64_t> dims(const std::string& name) const;
  std::vector<std::string> read_strings(const std::string& name) const;
  std::string string_attribute(const std::string& object, const std::string& name) const;
  double float64_attribute(const std::string& object, const std::string& name) const;
  int64_t int64_attribute(const std::string& object, const std::string& name) const;

  // Flushes and closes, checked. A File destroyed without close() is closed quietly.
  void close();

 private:
  File(std::string path, Handle file, bool in_memory = false)
      : path_(std::move(path)), file_(std::move(file)), in_memory_(in_memory) {}
  void write_image(const std::vector<char>& image) const;
  int64_t element_count(const std::string& name) const;
  void read_raw(const std::string& name, Type type, void* out) const;
  Handle open_dataset(const std::string& name) const;
  Handle open_attribute(const std::string& object, const std::string& name) const;
  void numeric_attribute(const std::string& object, const std::string& name, Type type,
                         void* out) const;
  void put_attribute(const std::string& object, const std::string& name, Id type, const void* v);

  std::string path_;
  Handle file_;
  bool in_memory_ = false;  // created: built in memory, written to path_ by close()
};

}  // namespace moetron::h5
