#pragma once

// SHA-256 (FIPS 180-4). Models, SAEs and images are identified by the hash of their bytes.

#include "common/Result.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace cytosae {

std::string sha256Hex(const void *data, size_t size);
// Streams the file; errors name nothing but the problem (callers add the path).
Result<std::string> sha256File(const std::string &path);

} // namespace cytosae
