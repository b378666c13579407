#include "weights/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/file_io.h"

namespace orbit {

namespace {

const char* st_dtype(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
  }
  return "?";
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    ORBIT_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    ORBIT_CHECK(name != "__metadata__" && !header.contains(name), "save_safetensors: duplicate or reserved name '", name, "'");
    Tensor c;
    {
      NoGradGuard ng;
      c = t.detach().to(Device::cpu()).contiguous();
    }
    const uint64_t nbytes = static_cast<uint64_t>(c.numel()) * dtype_size(c.dtype());
    header[name] = {{"dtype", st_dtype(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(c);
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  std::vector<ByteSpan> pieces = {{len, 8}, {h.data(), h.size()}};
  for (const auto& c : data) pieces.push_back({c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype())});
  write_file_atomically(path, pieces, "save_safetensors");
}

NamedTensors parse_safetensors(const std::string& bytes, const std::string& what, Metadata* metadata) {
  return parse_safetensors(bytes.data(), bytes.size(), what, metadata);
}

NamedTensors parse_safetensors(const char* data, size_t size, const std::string& what, Metadata* metadata) {
  const std::string_view bytes(data, size);
  ORBIT_CHECK(bytes.size() >= 8, what, ": file of ", bytes.size(), " bytes is too short for the 8-byte header length");
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  ORBIT_CHECK(hlen <= bytes.size() - 8, what, ": header length ", hlen, " runs beyond the end of the file (",
              bytes.size() - 8, " bytes after the length field)",
              bytes.size() > 8 && bytes[8] != '{'
                  ? "; not a safetensors file, which starts with an 8-byte header length and a JSON header (a PyTorch "
                    ".pt/.pth file is converted with weights/export_torch.py)"
                  : "");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.data() + 8, bytes.data() + 8 + hlen);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(what, ": malformed JSON header: ", e.what()));
  }
  ORBIT_CHECK(header.is_object(), what, ": the header must be a JSON object, got ", header.type_name());
  const uint64_t data_begin = 8 + hlen, data_size = bytes.size() - data_begin;

  struct Entry {
    std::string name;
    std::string dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      ORBIT_CHECK(v.is_object(), what, ": __metadata__ must be an object of strings");
      for (auto& [k, s] : v.items()) {
        ORBIT_CHECK(s.is_string(), what, ": __metadata__ value of '", k, "' is not a string");
        if (metadata) (*metadata)[k] = s.get<std::string>();
      }
      continue;
    }
    ORBIT_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), what,
                ": tensor '", name, "' needs dtype, shape and data_offsets");
    ORBIT_CHECK(v["dtype"].is_string(), what, ": tensor '", name, "': dtype must be a string");
    ORBIT_CHECK(v["shape"].is_array() && v["data_offsets"].is_array() && v["data_offsets"].size() == 2, what,
                ": tensor '", name, "': shape must be a list and data_offsets a pair");
    Entry e{name, v["dtype"].get<std::string>(), {}, 0, 0};
    for (auto& d : v["shape"]) {
      ORBIT_CHECK(d.is_number_unsigned(), what, ": tensor '", name, "': shape entries must be non-negative integers, got ", d.dump());
      ORBIT_CHECK(d.get<uint64_t>() < (uint64_t(1) << 40), what, ": tensor '", name, "': dimension ", d.dump(), " is implausibly large");
      e.shape.push_back(d.get<int64_t>());
    }
    for (auto& o : v["data_offsets"])
      ORBIT_CHECK(o.is_number_unsigned(), what, ": tensor '", name, "': data_offsets must be non-negative integers");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    ORBIT_CHECK(e.begin <= e.end && e.end <= data_size, what, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                ") lie outside the data section of ", data_size, " bytes");
    entries.push_back(std::move(e));
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    ORBIT_CHECK(entries[i].begin >= entries[i - 1].end, what, ": tensors '", entries[i - 1].name, "' and '", entries[i].name,
                "' overlap in the data section");

  NamedTensors out;
  for (const auto& e : entries) {
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      ORBIT_CHECK(d == 0 || numel <= std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d), what, ": tensor '",
                  e.name, "': shape ", shape_str(e.shape), " overflows");
      numel *= static_cast<uint64_t>(d);
    }
    size_t esize;
    if (e.dtype == "F32") esize = 4;
    else if (e.dtype == "F64" || e.dtype == "I64") esize = 8;
    else if (e.dtype == "F16" || e.dtype == "BF16") esize = 2;
    else throw Error(str_cat(what, ": tensor '", e.name, "' has unsupported dtype \"", e.dtype, "\" (expected F32, F64, I64, F16 or BF16)"));
    ORBIT_CHECK(numel <= (e.end - e.begin) / esize && numel * esize == e.end - e.begin, what, ": tensor '", e.name, "': ",
                e.end - e.begin, " bytes of data do not match shape ", shape_str(e.shape), " of ", e.dtype, " (",
                numel, " elements = ", numel * esize, " bytes)");
    const char* src = bytes.data() + data_begin + e.begin;
    Tensor t;
    if (e.dtype == "F32" || e.dtype == "F64" || e.dtype == "I64") {
      t = Tensor::empty(e.shape, e.dtype == "F32" ? DType::F32 : e.dtype == "F64" ? DType::F64 : DType::I64);
      if (numel) std::memcpy(t.raw_data(), src, numel * esize);
    } else {
      t = Tensor::empty(e.shape, DType::F32);
      float* dst = t.data<float>();
      for (uint64_t i = 0; i < numel; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = e.dtype == "F16" ? half_to_float(h) : bf16_to_float(h);
      }
    }
    out.emplace_back(e.name, t);
  }
  return out;
}

NamedTensors load_safetensors(const std::string& path, Metadata* metadata) {
  // Memory-mapped where possible: the tensors are copied out of the mapping, which is then dropped,
  // so a large file is never held twice in memory. Otherwise (a pipe, a file system without mmap)
  // the file is read into memory.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ORBIT_CHECK(fd >= 0, "load_safetensors: cannot open ", path, ": ", std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    const size_t size = static_cast<size_t>(st.st_size);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (map != MAP_FAILED) {
      struct Unmap {
        void* p;
        size_t n;
        ~Unmap() { ::munmap(p, n); }
      } unmap{map, size};
      return parse_safetensors(static_cast<const char*>(map), size, path, metadata);
    }
  } else {
    ::close(fd);
  }
  std::ifstream in(path, std::ios::binary);
  ORBIT_CHECK(in.good(), "load_safetensors: cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_safetensors(ss.str(), path, metadata);
}

}  // namespace orbit
