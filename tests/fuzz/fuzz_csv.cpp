// libFuzzer target: the CSV parser behind manifests and patient tables, and the manifest and
// patient-table readers on top of it (through a temporary file, as users give them).

#include "pipeline/ImportScan.h"

#include <cstdio>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const std::string text(reinterpret_cast<const char *>(data), size);
    auto table = cytosae::pipeline::parseCsv(text, 1 << 20);
    if (table.ok() && table->rows.size() != table->rowLines.size())
        __builtin_trap();
    static const std::string path = "/tmp/cytosae-fuzz-" + std::to_string(getpid()) + ".csv";
    if (FILE *f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data, 1, size, f);
        std::fclose(f);
        (void)cytosae::pipeline::readManifest(path);
        (void)cytosae::pipeline::readPatientTable(path);
    }
    return 0;
}
