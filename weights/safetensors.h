// Named tensors in the safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
// header ({"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"key": "value"}}), then the raw little-endian data. Loading runs no code and
// checks every bound: header length against the file size, offsets inside the data section, no
// overlaps, byte size equal to the shape's, known dtypes. F16 and BF16 convert to float32.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace orbit {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using Metadata = std::map<std::string, std::string>;

// Writes atomically: a temporary file next to `path`, renamed over it once complete.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {});
// Tensors in file order (sorted by data offset), read through a memory mapping of the file where
// possible. Throws orbit::Error naming the file and tensor.
NamedTensors load_safetensors(const std::string& path, Metadata* metadata = nullptr);
// The same from bytes in memory (`what` names the source in errors). Reads nothing outside
// [data, data + size).
NamedTensors parse_safetensors(const std::string& bytes, const std::string& what, Metadata* metadata = nullptr);
NamedTensors parse_safetensors(const char* data, size_t size, const std::string& what, Metadata* metadata = nullptr);

}  // namespace orbit
