#pragma once

// SHA-256 (FIPS 180-4). Models, SAEs and images are identified by the hash of their bytes.

#include "common/Result.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace cytosae {

// Uses the CPU's SHA instructions where it has them.
std::string sha256Hex(const void *data, size_t size);
// The portable code only (tests compare it with the SHA-NI path).
std::string sha256HexPortable(const void *data, size_t size);
// Streams the file; errors name nothing but the problem (callers add the path).
Result<std::string> sha256File(const std::string &path);

} // namespace cytosae
