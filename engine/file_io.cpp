#include "engine/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "engine/error.h"

namespace orbit {

std::string byte_count(size_t bytes) {
  if (bytes < 1000) return str_cat(bytes, bytes == 1 ? " byte" : " bytes");
  const char* units[] = {"kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes) / 1000;
  int u = 0;
  while (v >= 1000 && u < 3) v /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces, const std::string& who) {
  size_t total = 0;
  for (const ByteSpan& p : pieces) total += p.size;
  // A temporary name unique to this process and call, in the same directory so that the rename is atomic.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = str_cat(path, ".tmp", ::getpid(), "_", counter++);
  std::error_code ec;
  const bool existed = std::filesystem::exists(path, ec);
  auto fail = [&](const char* step, int err) {
    ::unlink(tmp.c_str());
    throw Error(str_cat(who, ": cannot write ", path, " (", byte_count(total), "): ", step, ": ", std::strerror(err),
                        existed ? "; the earlier file is kept as it was" : "; nothing was written"));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw Error(str_cat(who, ": cannot write ", path, ": creating ", tmp, ": ", std::strerror(err),
                        err == ENOENT ? " (does the folder exist?)" : ""));
  }
  for (const ByteSpan& p : pieces) {
    const char* at = static_cast<const char*>(p.data);
    size_t left = p.size;
    while (left > 0) {
      const ssize_t n = ::write(fd, at, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        ::close(fd);
        fail("writing", err);
      }
      at += n;
      left -= static_cast<size_t>(n);
    }
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("flushing to the disk", err);
  }
  if (::close(fd) != 0) fail("closing", errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    fail(str_cat("renaming ", tmp).c_str(), err);
  }
  // The rename itself reaches the disk with the folder's entry (best effort: not every file system lets
  // a folder be opened for this).
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace orbit
