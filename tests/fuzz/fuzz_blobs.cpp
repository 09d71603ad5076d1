// libFuzzer target: the per-image blobs read back from the project database (a damaged or
// hand-edited database must give errors, never out-of-bounds reads).

#include "store/ActivationCodec.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)cytosae::store::decodeTokenTopK(data, size);
    (void)cytosae::store::decodeConcepts(data, size);
    (void)cytosae::store::decodeFloats(data, size);
    return 0;
}
