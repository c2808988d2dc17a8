#include "moetron/io/hdf5.hpp"

#include <hdf5.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>
#include <functional>
#include <type_traits>
#include <utility>

#include "moetron/core/error.hpp"

namespace moetron::h5 {

static_assert(std::is_same<hid_t, Id>::value, "h5::Id must be hid_t");
static_assert(std::is_same<herr_t, int>::value, "Handle::Closer assumes herr_t is int");

namespace {

// While alive, HDF5 prints nothing on failure: we turn failures into Errors ourselves.
class QuietErrors {
 public:
  QuietErrors() {
    if (H5Eget_auto2(H5E_DEFAULT, &func_, &data_) < 0) func_ = nullptr;
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// The most specific message on HDF5's error stack (e.g. "unable to open file: ... errno = 2"),
// then clears the stack so the next failure starts fresh.
std::string innermost_reason() {
  std::string reason;
  auto take_first = [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
    if (n == 0 && e->desc) *static_cast<std::string*>(out) = e->desc;
    return 0;
  };
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first, &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason.empty() ? "no detail from HDF5" : reason;
}

[[noreturn]] void fail(const std::string& what) {
  MOETRON_FAIL(what << " (HDF5: " << innermost_reason() << ")");
}

Id checked_id(Id id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void checked(herr_t rc, const std::string& what) {
  if (rc < 0) fail(what);
}

Handle own(Id id, Handle::Closer closer, const std::string& what) {
  return Handle(checked_id(id, what), closer);
}

hid_t memory_type(Type t) {
  switch (t) {
    case Type::Int8: return H5T_NATIVE_INT8;
    case Type::Int32: return H5T_NATIVE_INT32;
    case Type::Int64: return H5T_NATIVE_INT64;
    case Type::Float32: return H5T_NATIVE_FLOAT;
    case Type::Float64: return H5T_NATIVE_DOUBLE;
  }
  MOETRON_ASSERT(false);
}

hid_t file_type(Type t) {
  switch (t) {
    case Type::Int8: return H5T_STD_I8LE;
    case Type::Int32: return H5T_STD_I32LE;
    case Type::Int64: return H5T_STD_I64LE;
    case Type::Float32: return H5T_IEEE_F32LE;
    case Type::Float64: return H5T_IEEE_F64LE;
  }
  MOETRON_ASSERT(false);
}

// Whether a stored type holds exactly `t` (class, width and signedness), so readers never
// convert silently, e.g. int64 token counts read as int32.
bool stored_as(hid_t stored, Type t) {
  H5T_class_t cls = H5Tget_class(stored);
  size_t size = H5Tget_size(stored);
  switch (t) {
    case Type::Int8:
    case Type::Int32:
    case Type::Int64: {
      size_t want = t == Type::Int8 ? 1 : t == Type::Int32 ? 4 : 8;
      return cls == H5T_INTEGER && size == want && H5Tget_sign(stored) == H5T_SGN_2;
    }
    case Type::Float32: return cls == H5T_FLOAT && size == 4;
    case Type::Float64: return cls == H5T_FLOAT && size == 8;
  }
  return false;
}

std::string describe_type(hid_t stored) {
  H5T_class_t cls = H5Tget_class(stored);
  size_t bits = H5Tget_size(stored) * 8;
  if (cls == H5T_INTEGER)
    return (H5Tget_sign(stored) == H5T_SGN_NONE ? "uint" : "int") + std::to_string(bits);
  if (cls == H5T_FLOAT) return "float" + std::to_string(bits);
  if (cls == H5T_STRING) return "string";
  return "a non-numeric type";
}

Handle utf8_string_type(const std::string& what) {
  Handle t = own(H5Tcopy(H5T_C_S1), H5Tclose, what);
  checked(H5Tset_size(t.get(), H5T_VARIABLE), what);
  checked(H5Tset_cset(t.get(), H5T_CSET_UTF8), what);
  return t;
}

Handle simple_space(const std::vector<int64_t>& dims, const std::string& what) {
  std::vector<hsize_t> d(dims.begin(), dims.end());
  return own(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr), H5Sclose, what);
}

int64_t product(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

void require_no_nul(const std::string& s, const std::string& where) {
  MOETRON_CHECK(s.find('\0') == std::string::npos,
                where << ": string contains a NUL byte, which HDF5 strings cannot hold");
}

// Reads `count` strings of a dataset or attribute, variable-length or fixed-length.
// `read(memtype, buffer)` is H5Dread or H5Aread bound to the object.
std::vector<std::string> read_string_values(hid_t stored, hid_t space, int64_t count,
                                            const std::function<herr_t(hid_t, void*)>& read,
                                            const std::string& what) {
  MOETRON_CHECK(H5Tget_class(stored) == H5T_STRING, what << ": stored as "
                                                         << describe_type(stored) << ", not strings");
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count));
  htri_t variable = H5Tis_variable_str(stored);
  checked(variable, what);
  if (variable) {
    Handle mem = utf8_string_type(what);
    std::vector<char*> raw(static_cast<size_t>(count), nullptr);
    if (count > 0) checked(read(mem.get(), raw.data()), what);
    for (char* s : raw) out.emplace_back(s ? s : "");
#if H5_VERSION_GE(1, 12, 0)
    if (count > 0) checked(H5Treclaim(mem.get(), space, H5P_DEFAULT, raw.data()), what);
#else
    if (count > 0) checked(H5Dvlen_reclaim(mem.get(), space, H5P_DEFAULT, raw.data()), what);
#endif
    return out;
  }
  size_t width = H5Tget_size(stored);
  Handle mem = own(H5Tcopy(H5T_C_S1), H5Tclose, what);
  checked(H5Tset_size(mem.get(), width), what);
  std::vector<char> raw(static_cast<size_t>(count) * width);
  if (count > 0) checked(read(mem.get(), raw.data()), what);
  for (int64_t i = 0; i < count; ++i) {
    const char* s = raw.data() + i * width;
    out.emplace_back(s, strnlen(s, width));
  }
  return out;
}

int64_t space_elements(hid_t space, const std::string& what) {
  hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n < 0) fail(what);
  return static_cast<int64_t>(n);
}

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::Int8: return "int8";
    case Type::Int32: return "int32";
    case Type::Int64: return "int64";
    case Type::Float32: return "float32";
    case Type::Float64: return "float64";
  }
  return "?";
}

// ---- Handle -----------------------------------------------------------------------------------

Handle::Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = -1; }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    release_quietly();
    id_ = std::exchange(o.id_, -1);
    closer_ = o.closer_;
  }
  return *this;
}

Handle::~Handle() { release_quietly(); }

void Handle::release_quietly() noexcept {
  if (!valid()) return;
  QuietErrors quiet;
  closer_(std::exchange(id_, -1));
}

void Handle::close(const std::string& what) {
  if (!valid()) return;
  QuietErrors quiet;
  herr_t rc = closer_(std::exchange(id_, -1));
  checked(rc, what);
}

// ---- RowWriter --------------------------------------------------------------------------------

RowWriter::RowWriter(Handle dataset, std::string where, Type type, std::vector<int64_t> dims)
    : dataset_(std::move(dataset)), where_(std::move(where)), type_(type), dims_(std::move(dims)) {
  MOETRON_ASSERT(!dims_.empty());
}

int64_t RowWriter::row_elements() const {
  return product(std::vector<int64_t>(dims_.begin() + 1, dims_.end()));
}

void RowWriter::write_rows(int64_t first_row, int64_t rows, const void* data) {
  MOETRON_ASSERT(first_row >= 0 && rows >= 0 && first_row + rows <= dims_[0]);
  if (rows == 0 || row_elements() == 0) return;
  QuietErrors quiet;
  std::string what = where_ + ": cannot write rows " + std::to_string(first_row) + ".." +
                     std::to_string(first_row + rows);
  Handle file_space = own(H5Dget_space(dataset_.get()), H5Sclose, what);
  std::vector<hsize_t> start(dims_.size(), 0), count(dims_.begin(), dims_.end());
  start[0] = static_cast<hsize_t>(first_row);
  count[0] = static_cast<hsize_t>(rows);
  checked(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr,
                              count.data(), nullptr),
          what);
  std::vector<int64_t> block(count.begin(), count.end());
  Handle mem_space = simple_space(block, what);
  checked(H5Dwrite(dataset_.get(), memory_type(type_), mem_space.get(), file_space.get(),
                   H5P_DEFAULT, data),
          what);
}

void RowWriter::close() { dataset_.close(where_ + ": cannot close dataset"); }

// ---- File -------------------------------------------------------------------------------------

namespace {

// File access: SEMI close degree, so closing the file while an object is still open fails
// loudly instead of leaving a half-flushed file; and file locks that fall back quietly on
// parallel file systems that do not support them (Lustre, some NFS mounts).
Handle file_access(const std::string& what) {
  Handle fapl = own(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, what);
  checked(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI), what);
#if H5_VERSION_GE(1, 10, 7)
  checked(H5Pset_file_locking(fapl.get(), true, true), what);
#endif
  return fapl;
}

}  // namespace

// ---- Fd -------------------------------------------------------------------------------------

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

File File::create(const std::string& path) {
  QuietErrors quiet;
  std::string what = path + ": cannot create HDF5 file";
  Handle fapl = file_access(what);
  // Grows in 16 MiB steps (realloc of large blocks remaps, it does not copy).
  checked(H5Pset_fapl_core(fapl.get(), 16 << 20, /*backing_store=*/false), what);
  Handle f = own(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose, what);
  return File(path, std::move(f), /*in_memory=*/true);
}

// Writes the in-memory file's image to path_, every write checked (a full disk is an Error).
void File::write_image(const std::vector<char>& image) const {
  Fd out(::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  MOETRON_CHECK(out.get() >= 0, path_ << ": cannot create: " << std::strerror(errno));
  size_t done = 0;
  while (done < image.size()) {
    const ssize_t n = ::write(out.get(), image.data() + done, image.size() - done);
    if (n < 0 && errno == EINTR) continue;
    MOETRON_CHECK(n > 0, path_ << ": cannot write (" << done << " of " << image.size()
                               << " bytes written): " << (n < 0 ? std::strerror(errno) : "no progress"));
    done += static_cast<size_t>(n);
  }
  // Checked: some file systems (NFS) report a failed write only at close.
  MOETRON_CHECK(::close(out.release()) == 0, path_ << ": cannot write: " << std::strerror(errno));
}

File File::open_read(const std::string& path) {
  QuietErrors quiet;
  std::string what = path + ": cannot open HDF5 file";
  Handle fapl = file_access(what);
  Handle f = own(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose, what);
  return File(path, std::move(f));
}

void File::close() {
  if (!file_.valid()) return;
  QuietErrors quiet;
  checked(H5Fflush(file_.get(), H5F_SCOPE_LOCAL), path_ + ": cannot flush HDF5 file");
  std::vector<char> image;
  if (in_memory_) {
    const std::string what = path_ + ": cannot take the in-memory HDF5 file's image";
    const ssize_t size = H5Fget_file_image(file_.get(), nullptr, 0);
    if (size < 0) fail(what);
    image.resize(static_cast<size_t>(size));
    if (H5Fget_file_image(file_.get(), image.data(), image.size()) != size) fail(what);
  }
  file_.close(path_ + ": cannot close HDF5 file");
  if (in_memory_) write_image(image);
}

void File::create_group(const std::string& name) {
  QuietErrors quiet;
  std::string what = path_ + ": cannot create group " + name;
  Handle g = own(H5Gcreate2(file_.get(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                 H5Gclose, what);
  g.close(what);
}

bool File::exists(const std::string& name) const {
  QuietErrors quiet;
  MOETRON_ASSERT(!name.empty() && name[0] == '/');
  // H5Lexists needs every parent to exist, so test each prefix in turn.
  for (size_t slash = name.find('/', 1);; slash = name.find('/', slash + 1)) {
    std::string prefix = name.substr(0, slash);
    if (prefix == "/") return true;
    htri_t found = H5Lexists(file_.get(), prefix.c_str(), H5P_DEFAULT);
    checked(found, path_ + ": cannot look up " + prefix);
    if (!found) return false;
    if (slash == std::string::npos) return true;
  }
}

void File::write_raw(const std::string& name, Type type, const void* data,
                     const std::vector<int64_t>& dims) {
  RowWriter rows = create_rows(name, type, dims);
  rows.write_rows(0, dims.empty() ? 0 : dims[0], data);
  rows.close();
}

RowWriter File::create_rows(const std::string& name, Type type, const std::vector<int64_t>& dims) {
  QuietErrors quiet;
  std::string what = path_ + ": cannot create dataset " + name;
  Handle space = simple_space(dims, what);
  Handle d = own(H5Dcreate2(file_.get(), name.c_str(), file_type(type), space.get(), H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose, what);
  return RowWriter(std::move(d), path_ + ":" + name, type, dims);
}

void File::write_strings(const std::string& name, const std::vector<std::string>& values) {
  QuietErrors quiet;
  std::string what = path_ + ": cannot write dataset " + name;
  std::vector<const char*> raw;
  raw.reserve(values.size());
  for (const std::string& v : values) {
    require_no_nul(v, path_ + ":" + name);
    raw.push_back(v.c_str());
  }
  Handle type = utf8_string_type(what);
  Handle space = simple_space({static_cast<int64_t>(values.size())}, what);
  Handle d = own(H5Dcreate2(file_.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose, what);
  if (!raw.empty())
    checked(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), what);
  d.close(what);
}

void File::put_attribute(const std::string& object, const std::string& name, Id type,
                         const void* value) {
  QuietErrors quiet;
  std::string what = path_ + ": cannot write attribute " + name + " of " + object;
  Handle obj = own(H5Oopen(file_.get(), object.c_str(), H5P_DEFAULT), H5Oclose, what);
  Handle space = own(H5Screate(H5S_SCALAR), H5Sclose, what);
  Handle a = own(H5Acreate2(obj.get(), name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                 H5Aclose, what);
  checked(H5Awrite(a.get(), type, value), what);
  a.close(what);
}

void File::set_attribute(const std::string& object, const std::string& name,
                         const std::string& value) {
  require_no_nul(value, path_ + ":" + object + " attribute " + name);
  QuietErrors quiet;
  Handle type = utf8_string_type(path_ + ": cannot make a string type");
  const char* raw = value.c_str();
  put_attribute(object, name, type.get(), &raw);
}

void File::set_attribute(const std::string& object, const std::string& name, double value) {
  put_attribute(object, name, H5T_NATIVE_DOUBLE, &value);
}

void File::set_attribute(const std::string& object, const std::string& name, int64_t value) {
  put_attribute(object, name, H5T_NATIVE_INT64, &value);
}

Handle File::open_dataset(const std::string& name) const {
  return own(H5Dopen2(file_.get(), name.c_str(), H5P_DEFAULT), H5Dclose,
             path_ + ": cannot open dataset " + name);
}

Handle File::open_attribute(const std::string& object, const std::string& name) const {
  return own(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT),
             H5Aclose, path_ + ": cannot open attribute " + name + " of " + object);
}

std::vector<int64_t> File::dims(const std::string& name) const {
  QuietErrors quiet;
  std::string what = path_ + ": cannot read the shape of " + name;
  Handle d = open_dataset(name);
  Handle space = own(H5Dget_space(d.get()), H5Sclose, what);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(what);
  std::vector<hsize_t> raw(static_cast<size_t>(rank));
  if (rank > 0) checked(H5Sget_simple_extent_dims(space.get(), raw.data(), nullptr), what);
  return std::vector<int64_t>(raw.begin(), raw.end());
}

int64_t File::element_count(const std::string& name) const { return product(dims(name)); }

void File::read_raw(const std::string& name, Type type, void* out) const {
  QuietErrors quiet;
  std::string what = path_ + ": cannot read dataset " + name;
  Handle d = open_dataset(name);
  Handle stored = own(H5Dget_type(d.get()), H5Tclose, what);
  MOETRON_CHECK(stored_as(stored.get(), type), path_ << ":" << name << " is stored as "
                                                     << describe_type(stored.get()) << ", not "
                                                     << type_name(type));
  Handle space = own(H5Dget_space(d.get()), H5Sclose, what);
  if (space_elements(space.get(), what) == 0) return;
  checked(H5Dread(d.get(), memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, out), what);
}

std::vector<std::string> File::read_strings(const std::string& name) const {
  QuietErrors quiet;
  std::string what = path_ + ": cannot read dataset " + name;
  Handle d = open_dataset(name);
  Handle stored = own(H5Dget_type(d.get()), H5Tclose, what);
  Handle space = own(H5Dget_space(d.get()), H5Sclose, what);
  auto read = [&](hid_t mem, void* buf) {
    return H5Dread(d.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  };
  return read_string_values(stored.get(), space.get(), space_elements(space.get(), what), read,
                            path_ + ":" + name);
}

bool File::has_attribute(const std::string& object, const std::string& name) const {
  QuietErrors quiet;
  const htri_t found = H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT);
  checked(found, path_ + ": cannot look up attribute " + name + " of " + object);
  return found > 0;
}

std::string File::string_attribute(const std::string& object, const std::string& name) const {
  QuietErrors quiet;
  std::string what = path_ + ": cannot read attribute " + name + " of " + object;
  Handle a = open_attribute(object, name);
  Handle stored = own(H5Aget_type(a.get()), H5Tclose, what);
  Handle space = own(H5Aget_space(a.get()), H5Sclose, what);
  MOETRON_CHECK(space_elements(space.get(), what) == 1,
                path_ << ":" << object << " attribute " << name << " is not a single string");
  auto read = [&](hid_t mem, void* buf) { return H5Aread(a.get(), mem, buf); };
  return read_string_values(stored.get(), space.get(), 1, read,
                            path_ + ":" + object + " attribute " + name)[0];
}

void File::numeric_attribute(const std::string& object, const std::string& name, Type type,
                             void* out) const {
  QuietErrors quiet;
  std::string what = path_ + ": cannot read attribute " + name + " of " + object;
  Handle a = open_attribute(object, name);
  Handle stored = own(H5Aget_type(a.get()), H5Tclose, what);
  Handle space = own(H5Aget_space(a.get()), H5Sclose, what);
  MOETRON_CHECK(stored_as(stored.get(), type) && space_elements(space.get(), what) == 1,
                path_ << ":" << object << " attribute " << name << " is not a single "
                      << type_name(type));
  checked(H5Aread(a.get(), memory_type(type), out), what);
}

double File::float64_attribute(const std::string& object, const std::string& name) const {
  double v = 0;
  numeric_attribute(object, name, Type::Float64, &v);
  return v;
}

int64_t File::int64_attribute(const std::string& object, const std::string& name) const {
  int64_t v = 0;
  numeric_attribute(object, name, Type::Int64, &v);
  return v;
}

}  // namespace moetron::h5
