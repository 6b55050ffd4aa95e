#pragma once
// A file's bytes, read whole with one open: the image decoders read each file once, into memory,
// and decode from there (a header read, a size check and a decode used to open it three times).

#include <batchpipe/core/error.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace batchpipe::io::detail {

/// The largest file read whole (an image, a list of images): 1 GiB. A sparse file or a device
/// would otherwise be read into memory whole.
inline constexpr std::uint64_t whole_file_limit = std::uint64_t{1} << 30;

/// The whole of the regular file `path`, at most `limit` bytes. A missing file (one that went
/// away since the index was made, say), a folder, a FIFO or device, a file over the limit, one
/// that cannot be read or that shrinks while it is read: a FileError naming it. The size is taken
/// from the open file, so a file replaced meanwhile is read whole.
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path, std::uint64_t limit) {
  // O_NONBLOCK: opening a FIFO without a writer would block for ever; it is refused below, and
  // the flag changes nothing for a regular file.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int error = errno;
    throw FileError(path, error == ENOENT ? std::string("no such file")
                                          : "cannot open: " + std::string(std::strerror(error)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat info {};
  if (::fstat(fd, &info) != 0) throw FileError(path, "cannot read: " + std::string(std::strerror(errno)));
  if (!S_ISREG(info.st_mode)) throw FileError(path, "not a regular file");
  if (static_cast<std::uint64_t>(info.st_size) > limit) {
    throw FileError(path, "the file has " + std::to_string(info.st_size) + " bytes, over the limit of " +
                              std::to_string(limit));
  }
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(info.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto got = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw FileError(path, "cannot read: " + std::string(std::strerror(errno)));
    if (got == 0) {
      throw FileError(path, "the file shrank while it was read: " + std::to_string(done) + " of " +
                                std::to_string(bytes.size()) + " bytes");
    }
    done += static_cast<std::size_t>(got);
  }
  return bytes;
}

}  // namespace batchpipe::io::detail
