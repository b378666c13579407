// IDX reader/writer (format in data/idx.h).
#include "data/idx.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>

#include "engine/file_io.h"

namespace orbit::data {

namespace {

bool valid_type_code(uint8_t code) {
  switch (code) {
    case 0x08: case 0x09: case 0x0B: case 0x0C: case 0x0D: case 0x0E: return true;
    default: return false;
  }
}

std::string hex_byte(uint8_t b) {
  std::ostringstream os;
  os << "0x" << std::hex << std::setw(2) << std::setfill('0') << static_cast<int>(b);
  return os.str();
}

std::string hex_bytes(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += (i ? " " : "") + hex_byte(p[i]);
  return s;
}

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

void write_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Reverses the bytes of every element in place (big-endian <-> little-endian).
void swap_elements(uint8_t* p, size_t count, size_t esize) {
  if (esize == 1 || !host_is_little_endian()) return;
  for (size_t i = 0; i < count; ++i, p += esize)
    for (size_t a = 0, b = esize - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
}

// The number of data bytes the dims describe, or false when the product (times the element size)
// does not fit in 63 bits.
bool data_bytes(const Shape& shape, size_t esize, uint64_t* out) {
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t n = esize;
  for (int64_t d : shape) {
    const uint64_t ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > limit / ud) return false;
    n *= ud;
  }
  *out = n;
  return true;
}

// Header checks shared by the file and memory readers. `size` is the full file size; on success
// fills type, shape and the header length.
void parse_header(const uint8_t* head, size_t head_len, uint64_t size, const std::string& name,
                  IdxType* type, Shape* shape, size_t* header_len) {
  const std::string where = "read_idx: " + name + ": ";
  if (size < 4)
    throw Error(str_cat(where, "truncated header: the file has ", size,
                        " bytes, an IDX file starts with a 4-byte magic number (0x00 0x00 type ndim)"));
  if (head[0] != 0 || head[1] != 0) {
    std::string hint;
    if (head[0] == 0x1f && head[1] == 0x8b)
      hint = " The file is gzip-compressed: gunzip it first (make data does this for .gz files).";
    throw Error(str_cat(where, "wrong magic number: got bytes ", hex_bytes(head, 4),
                        ", expected 0x00 0x00 followed by a type code (0x08 ubyte, 0x09 sbyte, 0x0B int16, "
                        "0x0C int32, 0x0D float32, 0x0E float64) and the number of dims. Is this an IDX file?",
                        hint));
  }
  if (!valid_type_code(head[2]))
    throw Error(str_cat(where, "unsupported element type code ", hex_byte(head[2]),
                        " (magic ", hex_bytes(head, 4),
                        "); expected one of 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, "
                        "0x0E float64"));
  const int ndim = head[3];
  if (ndim == 0)
    throw Error(str_cat(where, "the magic number ", hex_bytes(head, 4),
                        " declares 0 dims; expected at least 1"));
  const size_t hlen = 4 + 4 * static_cast<size_t>(ndim);
  if (size < hlen)
    throw Error(str_cat(where, "truncated header: the magic number declares ", ndim, " dims, so the header is ",
                        hlen, " bytes, but the file has only ", size, " bytes"));
  ORBIT_ASSERT(head_len >= hlen, "header buffer too short");
  *type = static_cast<IdxType>(head[2]);
  shape->assign(ndim, 0);
  for (int d = 0; d < ndim; ++d) (*shape)[d] = read_be32(head + 4 + 4 * d);
  *header_len = hlen;
}

// Checks the data length against the dims: truncated data, trailing bytes, overflow.
uint64_t check_data_size(IdxType type, const Shape& shape, uint64_t size, size_t hlen,
                         const std::string& name) {
  const std::string where = "read_idx: " + name + ": ";
  uint64_t need = 0;
  if (!data_bytes(shape, idx_type_size(type), &need))
    throw Error(str_cat(where, "the dims ", shape_str(shape), " (", idx_type_name(type),
                        ") describe more than 2^63 bytes: the product overflows; the header is corrupt"));
  const uint64_t have = size - hlen;
  if (have < need)
    throw Error(str_cat(where, "truncated data: the dims ", shape_str(shape), " of type ",
                        idx_type_name(type), " need ", need, " data bytes after the ", hlen,
                        "-byte header, got ", have));
  if (have > need)
    throw Error(str_cat(where, "trailing garbage: ", have - need, " bytes after the ", need,
                        " data bytes that the dims ", shape_str(shape), " (", idx_type_name(type),
                        ") describe; expected the file to end there (", hlen + need, " bytes in all)"));
  return need;
}

}  // namespace

size_t idx_type_size(IdxType t) {
  switch (t) {
    case IdxType::U8: case IdxType::I8: return 1;
    case IdxType::I16: return 2;
    case IdxType::I32: case IdxType::F32: return 4;
    case IdxType::F64: return 8;
  }
  throw Error(str_cat("idx: unknown element type code ", hex_byte(static_cast<uint8_t>(t))));
}

const char* idx_type_name(IdxType t) {
  switch (t) {
    case IdxType::U8: return "ubyte";
    case IdxType::I8: return "sbyte";
    case IdxType::I16: return "int16";
    case IdxType::I32: return "int32";
    case IdxType::F32: return "float32";
    case IdxType::F64: return "float64";
  }
  return "?";
}

double IdxArray::value(int64_t i) const {
  ORBIT_CHECK(i >= 0 && i < numel(), "IdxArray::value: index ", i, " out of range for ", numel(),
              " elements");
  const uint8_t* p = bytes.data() + i * idx_type_size(type);
  switch (type) {
    case IdxType::U8: return *p;
    case IdxType::I8: return static_cast<int8_t>(*p);
    case IdxType::I16: { int16_t v; std::memcpy(&v, p, 2); return v; }
    case IdxType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case IdxType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case IdxType::F64: { double v; std::memcpy(&v, p, 8); return v; }
  }
  return 0;
}

IdxArray IdxArray::from_u8(const Shape& shape, std::vector<uint8_t> values) {
  for (int64_t d : shape)
    ORBIT_CHECK(d >= 0, "IdxArray::from_u8: negative dim in shape ", shape_str(shape));
  ORBIT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "IdxArray::from_u8: shape ",
              shape_str(shape), " needs ", shape_numel(shape), " values, got ", values.size());
  IdxArray a;
  a.type = IdxType::U8;
  a.shape = shape;
  a.bytes = std::move(values);
  return a;
}

IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name) {
  IdxType type;
  Shape shape;
  size_t hlen;
  parse_header(data, size, size, name, &type, &shape, &hlen);
  const uint64_t need = check_data_size(type, shape, size, hlen, name);
  IdxArray a;
  a.type = type;
  a.shape = shape;
  a.bytes.assign(data + hlen, data + hlen + need);
  swap_elements(a.bytes.data(), static_cast<size_t>(a.numel()), idx_type_size(type));
  return a;
}

IdxArray read_idx(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    const int err = errno;
    throw Error(str_cat("read_idx: cannot open '", path, "': ", std::strerror(err),
                        ". Expected an IDX file (run `make data` to create the MNIST/Fashion-MNIST files)"));
  }
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  // The longest possible header is 4 + 4 * 255 bytes; read what the file has of it.
  uint8_t head[4 + 4 * 255] = {};
  const size_t head_len = static_cast<size_t>(std::min<uint64_t>(size, sizeof(head)));
  in.read(reinterpret_cast<char*>(head), static_cast<std::streamsize>(head_len));
  ORBIT_CHECK(in.good() || head_len == 0, "read_idx: ", path, ": read error in the header");
  IdxType type;
  Shape shape;
  size_t hlen;
  parse_header(head, head_len, size, path, &type, &shape, &hlen);
  const uint64_t need = check_data_size(type, shape, size, hlen, path);
  IdxArray a;
  a.type = type;
  a.shape = shape;
  a.bytes.resize(static_cast<size_t>(need));
  in.clear();
  in.seekg(static_cast<std::streamoff>(hlen));
  in.read(reinterpret_cast<char*>(a.bytes.data()), static_cast<std::streamsize>(need));
  ORBIT_CHECK(static_cast<uint64_t>(in.gcount()) == need, "read_idx: ", path, ": read error: got ",
              in.gcount(), " of ", need, " data bytes");
  swap_elements(a.bytes.data(), static_cast<size_t>(a.numel()), idx_type_size(type));
  return a;
}

std::vector<uint8_t> encode_idx(const IdxArray& a) {
  ORBIT_CHECK(valid_type_code(static_cast<uint8_t>(a.type)), "write_idx: unsupported element type code ",
              hex_byte(static_cast<uint8_t>(a.type)));
  ORBIT_CHECK(!a.shape.empty() && a.shape.size() <= 255, "write_idx: expected 1 to 255 dims, got shape ",
              shape_str(a.shape));
  for (int64_t d : a.shape)
    ORBIT_CHECK(d >= 0 && d <= int64_t{0xFFFFFFFF}, "write_idx: every dim must fit in a uint32, got shape ",
                shape_str(a.shape));
  const size_t esize = idx_type_size(a.type);
  uint64_t need = 0;
  ORBIT_CHECK(data_bytes(a.shape, esize, &need), "write_idx: shape ", shape_str(a.shape), " overflows");
  ORBIT_CHECK(need == a.bytes.size(), "write_idx: shape ", shape_str(a.shape), " of ", idx_type_name(a.type),
              " needs ", need, " bytes, the array holds ", a.bytes.size());
  std::vector<uint8_t> out = {0, 0, static_cast<uint8_t>(a.type), static_cast<uint8_t>(a.shape.size())};
  out.reserve(4 + 4 * a.shape.size() + a.bytes.size());
  for (int64_t d : a.shape) write_be32(out, static_cast<uint32_t>(d));
  const size_t start = out.size();
  out.insert(out.end(), a.bytes.begin(), a.bytes.end());
  swap_elements(out.data() + start, static_cast<size_t>(a.numel()), esize);
  return out;
}

void write_idx(const std::string& path, const IdxArray& array) {
  const std::vector<uint8_t> bytes = encode_idx(array);
  write_file_atomically(path, {ByteSpan{bytes.data(), bytes.size()}}, "write_idx");
}

Tensor idx_to_tensor(const IdxArray& a, DType dtype, double scale) {
  const int64_t n = a.numel();
  ORBIT_CHECK(static_cast<uint64_t>(n) * idx_type_size(a.type) == a.bytes.size(), "idx_to_tensor: shape ",
              shape_str(a.shape), " does not match the ", a.bytes.size(), " bytes held");
  Tensor t = Tensor::empty(a.shape, dtype);
  if (dtype == DType::I64) {
    ORBIT_CHECK(a.type != IdxType::F32 && a.type != IdxType::F64,
                "idx_to_tensor: int64 needs an integer IDX type, got ", idx_type_name(a.type));
    ORBIT_CHECK(scale == 1.0, "idx_to_tensor: scale must be 1 for int64, got ", scale);
    int64_t* out = t.data<int64_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int64_t>(a.value(i));
    return t;
  }
  if (a.type == IdxType::U8) {  // the common case, without the per-element switch
    const uint8_t* src = a.bytes.data();
    dispatch_float(dtype, "idx_to_tensor", [&](auto tag) {
      using T = decltype(tag);
      // A 256-entry table. For scale 1/255 divide in T, as torchvision's ToTensor does (x / 255),
      // so the values match PyTorch's bit for bit.
      T table[256];
      for (int k = 0; k < 256; ++k)
        table[k] = scale == 1.0 / 255.0 ? static_cast<T>(k) / static_cast<T>(255)
                                        : static_cast<T>(k * scale);
      T* out = t.data<T>();
      for (int64_t i = 0; i < n; ++i) out[i] = table[src[i]];
      return 0;
    });
    return t;
  }
  dispatch_float(dtype, "idx_to_tensor", [&](auto tag) {
    using T = decltype(tag);
    T* out = t.data<T>();
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(a.value(i) * scale);
    return 0;
  });
  return t;
}

Tensor idx_images_to_tensor(const IdxArray& a) {
  ORBIT_CHECK(a.type == IdxType::U8, "idx_images_to_tensor: expected ubyte (0x08) pixels, got ",
              idx_type_name(a.type));
  return idx_to_tensor(a, DType::F32, 1.0 / 255.0);
}

Tensor idx_labels_to_tensor(const IdxArray& a) {
  ORBIT_CHECK(a.shape.size() == 1, "idx_labels_to_tensor: expected a 1-D label array, got shape ",
              shape_str(a.shape));
  return idx_to_tensor(a, DType::I64);
}

}  // namespace orbit::data
