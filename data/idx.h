// The IDX file format of MNIST and Fashion-MNIST: reading, writing and conversion to tensors.
//
// Layout (all multi-byte numbers big-endian):
//   bytes 0-1   0x00 0x00
//   byte  2     element type: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
//   byte  3     number of dims n (at least 1)
//   then n      uint32 dims, then prod(dims) elements in row-major order, and nothing after them.
//
// The reader checks every one of these and throws orbit::Error naming the file, what it found and
// what it expected; it never trusts the header to size an allocation before comparing it with the
// file size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace orbit::data {

enum class IdxType : uint8_t {
  U8 = 0x08,
  I8 = 0x09,
  I16 = 0x0B,
  I32 = 0x0C,
  F32 = 0x0D,
  F64 = 0x0E,
};

// Bytes per element of an IDX type.
size_t idx_type_size(IdxType t);
// "ubyte", "sbyte", "int16", "int32", "float32", "float64".
const char* idx_type_name(IdxType t);

// An IDX array in memory. `bytes` holds the elements in row-major order and HOST byte order (the
// reader swaps multi-byte types from big-endian, the writer swaps them back).
struct IdxArray {
  IdxType type = IdxType::U8;
  Shape shape;
  std::vector<uint8_t> bytes;

  int64_t numel() const { return shape_numel(shape); }
  // Element i converted to double.
  double value(int64_t i) const;

  // A ubyte array; values.size() must equal the product of shape.
  static IdxArray from_u8(const Shape& shape, std::vector<uint8_t> values);
};

// Reads and validates an IDX file. Throws orbit::Error for a missing/unreadable file, a wrong magic
// number (with a hint when the file is gzip-compressed), an unsupported type code, a truncated
// header, a dims product that overflows, truncated data and trailing bytes.
IdxArray read_idx(const std::string& path);
// The same checks on an in-memory file; `name` is used in messages.
IdxArray parse_idx(const uint8_t* data, size_t size, const std::string& name);
// Writes an IDX file atomically (a temporary file renamed over `path`); the parent directory must exist.
void write_idx(const std::string& path, const IdxArray& array);
// The encoded file contents (header + big-endian data).
std::vector<uint8_t> encode_idx(const IdxArray& array);

// Converts to a tensor of `dtype` with the same shape. Floating dtypes multiply every value by
// `scale`; int64 requires an integer IDX type and scale 1.
Tensor idx_to_tensor(const IdxArray& array, DType dtype, double scale = 1.0);
// Images: a ubyte array -> float32 in [0, 1] (value / 255), same shape.
Tensor idx_images_to_tensor(const IdxArray& array);
// Labels: a 1-D integer array -> int64 [N].
Tensor idx_labels_to_tensor(const IdxArray& array);

}  // namespace orbit::data
