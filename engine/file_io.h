// Writing a file so that a crash, a kill or a full disk never leaves it half written: the bytes go to a
// temporary file beside it, are flushed to the disk (fsync), and the temporary file is renamed over the
// path (atomic on POSIX file systems), so the path holds either its old content or the new one. Used for
// checkpoints, weights, results, datasets and images.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace orbit {

struct ByteSpan {
  const void* data;
  size_t size;
};

// Writes the pieces, in order, as the file `path`. On failure the temporary file is removed and `path`
// is left as it was; the error (an orbit::Error starting with `who`) names the path, the cause as the
// system gives it ("No space left on device") and the size, and says whether an earlier file is kept.
void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces, const std::string& who);
inline void write_file_atomically(const std::string& path, const std::string& bytes, const std::string& who) {
  write_file_atomically(path, {ByteSpan{bytes.data(), bytes.size()}}, who);
}

// "12 bytes", "3.4 kB", "33.6 MB", "1.2 GB" (powers of 1000), for messages.
std::string byte_count(size_t bytes);

}  // namespace orbit
