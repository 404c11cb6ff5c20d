// Small file helpers shared by every layer (header-only, no dependencies beyond POSIX and the
// C++ standard library).
//
// RemoveTree exists because std::filesystem::remove_all crashed (a call through a null
// pointer inside libstdc++) on the GPU machine's GCC 13 toolchain with PyTorch's LibTorch:
// use this instead, in library code and tests alike.
#pragma once

#include <ftw.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/status.h"

namespace tlt {

namespace internal {
inline int RemoveEntry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path) == 0 || errno == ENOENT ? 0 : -1;
}
}  // namespace internal

// Deletes `path` and everything below it; a missing path is fine.
inline Status RemoveTree(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0) return Status::OK();
  if (nftw(path.c_str(), internal::RemoveEntry, 16, FTW_DEPTH | FTW_PHYS) != 0)
    return IoError("cannot remove " + path + ": " + std::strerror(errno));
  return Status::OK();
}

// The whole content of the file at `path`, read in binary mode; NotFound("cannot read <path>")
// when it cannot be opened. Thread-safe (no shared state).
inline Result<std::string> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace tlt
