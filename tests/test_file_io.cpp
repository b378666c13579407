// Atomic file writes (engine/file_io.h): the file holds the old content or the new one, never a part,
// and a failed write leaves no temporary file behind.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/file_io.h"
#include "test_util.h"

namespace orbit {
namespace {

namespace fs = std::filesystem;
using testing::expect_error;
using testing::read_file_bytes;
using testing::TempDir;

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

TEST(FileIo, WritesThePiecesInOrder) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string head = "head", body(100000, 'x');
  write_file_atomically(path, {{head.data(), head.size()}, {body.data(), body.size()}, {"!", 1}}, "test");
  EXPECT_EQ(read_file_bytes(path), head + body + "!");
  write_file_atomically(path, std::string("new"), "test");  // replaces the file
  EXPECT_EQ(read_file_bytes(path), "new");
  EXPECT_EQ(files_in(dir.path().string()), 1u);  // no temporary file left
  expect_error([&] { write_file_atomically(dir.file("no/such/folder/b.bin"), std::string("x"), "test"); },
               {"test: cannot write", "no/such/folder/b.bin", "No such file or directory", "does the folder exist?"});
}

// A write that fails part way (here the process's file-size limit, as a full disk would: the system
// refuses the bytes beyond it) leaves the earlier file as it was and removes the temporary one; the
// error names the path, the size, the system's cause and what is kept.
TEST(FileIo, AFailedWriteKeepsTheEarlierFile) {
  TempDir dir;
  const std::string path = dir.file("checkpoint.safetensors");
  write_file_atomically(path, std::string("the earlier checkpoint"), "test");
  struct rlimit saved {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  if (saved.rlim_cur != RLIM_INFINITY && saved.rlim_cur < 4096) GTEST_SKIP() << "file-size limit already below 4 kB";
  auto* const old_handler = std::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of a signal
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string big(100000, 'y');
  std::string message;
  try {
    write_file_atomically(path, big, "save_safetensors");
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  for (const char* part : {"save_safetensors: cannot write ", "checkpoint.safetensors (100.0 kB): writing: File too large",
                           "the earlier file is kept as it was"})
    EXPECT_NE(message.find(part), std::string::npos) << part << " not in: " << message;
  EXPECT_EQ(read_file_bytes(path), "the earlier checkpoint");
  EXPECT_EQ(files_in(dir.path().string()), 1u);
}

TEST(FileIo, ByteCount) {
  EXPECT_EQ(byte_count(1), "1 byte");
  EXPECT_EQ(byte_count(999), "999 bytes");
  EXPECT_EQ(byte_count(33604896), "33.6 MB");
  EXPECT_EQ(byte_count(1500000000), "1.5 GB");
}

}  // namespace
}  // namespace orbit
