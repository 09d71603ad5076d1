// libFuzzer target: the data-only pickle interpreter that reads every checkpoint's data.pkl.
// Any input must end in a value or an error message: no crash, hang, or huge allocation.

#include "model/Pickle.h"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cytosae::model::PickleLimits limits;
    limits.maxItems = 1'000'000; // keep each run small; the real limit is larger
    auto result = cytosae::model::parsePickle(data, size, limits);
    if (result.ok())
        (void)result.value()->describe();
    return 0;
}
