#pragma once

// NumPy .npy (format 1.0) export, so intermediate tensors can be compared against the
// Python reference with a plain np.load().

#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::io {

// shape is C order (last axis fastest); an empty shape writes a 0-d scalar of one element.
Status writeNpyFloat32(const std::string &path, const float *data, const std::vector<int64_t> &shape);
Status writeNpyInt32(const std::string &path, const int32_t *data, const std::vector<int64_t> &shape);

// Builds the complete header (magic, version, length, dict, padding) for descr "<f4" or "<i4".
// Exposed so tests can check the exact bytes without going through a file.
Result<std::string> npyHeader(const std::string &descr, const std::vector<int64_t> &shape);

struct NpyArray {
    std::string descr;          // "<f4" or "<i4"
    std::vector<int64_t> shape;
    std::vector<char> bytes;    // C-order data in host byte order (ready to memcpy), product(shape) * 4 bytes
};

// Reads what the writers produce (and NumPy's own v1.0/v2.0 files of the same dtypes);
// anything else is rejected with a message rather than misread.
Result<NpyArray> readNpy(const std::string &path);

} // namespace cytosae::io
