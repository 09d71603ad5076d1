// libFuzzer target: the JSON reader behind annotation imports, and the annotation exchange
// format on top of it (what another lab's export file may contain).

#include "annotation/Exchange.h"
#include "io/JsonReader.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const std::string text(reinterpret_cast<const char *>(data), size);
    auto value = cytosae::io::parseJson(text, 1 << 20);
    if (value.ok()) {
        auto tables = cytosae::annotation::exchangeFromJson(text);
        if (tables.ok())
            for (const auto &t : *tables)
                for (const auto &row : t.rows)
                    if (row.size() != t.columns.size())
                        __builtin_trap();
    }
    return 0;
}
