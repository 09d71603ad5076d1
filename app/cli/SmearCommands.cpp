// cytosae import --smear | demo-smear: whole smear fields from the command line.

#include "CliArgs.h"
#include "CliCommon.h"
#include "Commands.h"
#include "Interrupt.h"
#include "Progress.h"

#include "demo/SmearField.h"
#include "imaging/SmearSource.h"
#include "pipeline/SmearImporter.h"
#include "store/ProjectDb.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace cytosae::cli {

namespace fs = std::filesystem;

namespace {

const char *kImportSmearHelp =
    "Usage: cytosae import PROJECT SOURCE --smear [options]\n"
    "\n"
    "Adds whole smear fields: SOURCE is one image file, a folder of them (--layout patient:\n"
    "one folder per patient) or a .csv manifest (path, patient, diagnosis). In each field the\n"
    "white cells are detected tile by tile (TIFF fields are read band by band, so fields of\n"
    "20,000 x 20,000 pixels and more fit in a fixed amount of memory); each cell is saved as a\n"
    "PNG crop at the single-cell scale and added as an image linked to its smear, so that\n"
    "'cytosae run' analyses it like any single-cell image. Fields already in the project are\n"
    "skipped; a field that cannot be read is recorded as rejected with the reason.\n"
    "\n"
    "Options:\n"
    "  --microns-per-pixel X  scale of the fields (default 0.14)\n"
    "  --crop-microns X       side of the window cut around each cell (default 20.16)\n"
    "  --crop-size N          crop side in pixels (default 144)\n"
    "  --cells-dir DIR        where the crops go (default PROJECT.cells)\n"
    "  --patient CODE         patient of every field\n"
    "  --layout L             flat (default), patient, diagnosis-patient\n"
    "  --follow-symlinks      follow symbolic links out of the folder\n";

const char *kDemoSmearHelp = "Usage: cytosae demo-smear DIR [options]\n"
                             "\n"
                             "Writes generated smear fields (TIFF) with known white-cell positions: red cells,\n"
                             "platelets, stain debris and synthetic white cells, some touching, at 0.14 um/pixel.\n"
                             "DIR/truth.csv lists every white cell: file, x, y, w, h, type, touching.\n"
                             "\n"
                             "Options:\n"
                             "  --count N       fields (default 3)\n"
                             "  --width W       field width in pixels (default 1536)\n"
                             "  --height H      field height in pixels (default 1024)\n"
                             "  --seed S        first seed (default 1)\n";

bool doubleValue(CliArgs &args, const std::string &opt, double fallback, double lo, double hi, double &out,
                 std::string &error)
{
    out = fallback;
    if (!args.has(opt))
        return true;
    const std::string v = args.value(opt);
    char *end = nullptr;
    const double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(d >= lo && d <= hi)) {
        error = opt + " expects a number between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got '" + v +
                "'";
        return false;
    }
    out = d;
    return true;
}

} // namespace

int importSmearCommand(int argc, char **argv)
{
    CliArgs args({"--microns-per-pixel", "--crop-microns", "--crop-size", "--cells-dir", "--patient", "--layout"},
                 {"--help", "--smear", "--follow-symlinks"});
    if (!args.parse(argc, argv, 2))
        return usageError("import", args.error(), kImportSmearHelp);
    if (args.has("--help")) {
        std::fputs(kImportSmearHelp, stdout);
        return 0;
    }
    if (args.positional().size() != 2)
        return usageError("import", "expected PROJECT and SOURCE", kImportSmearHelp);
    pipeline::SmearImportOptions options;
    options.source = args.positional()[1];
    options.cellsDir = args.value("--cells-dir");
    options.patientCode = args.value("--patient");
    options.followSymlinks = args.has("--follow-symlinks");
    std::string error;
    if (!doubleValue(args, "--microns-per-pixel", 0.14, 0.01, 10.0, options.detector.micronsPerPixel, error) ||
        !doubleValue(args, "--crop-microns", 20.16, 1.0, 1000.0, options.detector.cropMicrons, error))
        return usageError("import", error, kImportSmearHelp);
    if (!args.intValue("--crop-size", 144, 16, 1024, options.detector.cropSize))
        return usageError("import", args.error(), kImportSmearHelp);
    auto layout = pipeline::parseLayout(args.value("--layout", "flat"));
    if (!layout)
        return usageError("import", layout.message(), kImportSmearHelp);
    options.layout = *layout;

    const std::string projectPath = args.positional()[0];
    auto db = store::ProjectDb::open(projectPath, store::ProjectDb::OpenMode::Create);
    if (!db) {
        std::fprintf(stderr, "error: %s: %s\n", projectPath.c_str(), db.message().c_str());
        return 1;
    }
    InterruptGuard guard;
    auto report = pipeline::importSmears(*db, options, stderrProgress(), &interruptFlag());
    finishProgress();
    if (!report) {
        std::fprintf(stderr, "error: %s\n", report.message().c_str());
        return 1;
    }
    printImportProblems(*report);
    std::printf("%lld smear field(s) found: %lld added, %lld already in the project, %lld rejected; "
                "%lld cell(s) added%s\n",
                (long long)report->found, (long long)report->added, (long long)report->alreadyPresent,
                (long long)report->rejected, (long long)report->cellsAdded, report->cancelled ? " (cancelled)" : "");
    return report->cancelled || report->rejected ? 1 : 0;
}

int demoSmearCommand(int argc, char **argv)
{
    CliArgs args({"--count", "--width", "--height", "--seed"}, {"--help"});
    if (!args.parse(argc, argv, 2))
        return usageError("demo-smear", args.error(), kDemoSmearHelp);
    if (args.has("--help")) {
        std::fputs(kDemoSmearHelp, stdout);
        return 0;
    }
    int count = 3, seed = 1;
    demo::SmearFieldOptions fo;
    if (!args.intValue("--count", 3, 1, 10000, count) || !args.intValue("--width", 1536, 256, 200000, fo.width) ||
        !args.intValue("--height", 1024, 256, 200000, fo.height) || !args.intValue("--seed", 1, 0, 1 << 30, seed))
        return usageError("demo-smear", args.error(), kDemoSmearHelp);
    if (args.positional().size() != 1)
        return usageError("demo-smear", "expected one folder", kDemoSmearHelp);
    const fs::path dir = args.positional()[0];
    std::error_code ec;
    fs::create_directories(dir, ec);
    std::ofstream truth(dir / "truth.csv");
    if (ec || !truth) {
        std::fprintf(stderr, "error: %s: cannot create the folder or truth.csv\n", dir.string().c_str());
        return 1;
    }
    truth << "file,x,y,w,h,type,touching\n";
    for (int i = 0; i < count; ++i) {
        const std::string name = "smear_" + std::to_string(seed + i) + ".tif";
        const demo::SmearLayout layout = demo::planSmearField(uint64_t(seed + i), fo);
        std::vector<uint8_t> chunk;
        int chunkY = -1, chunkRows = 0;
        Status s = imaging::writeTiffByStrips(
            (dir / name).string(), layout.width, layout.height, [&](int y0, int rows, uint8_t *out) {
                if (chunkY < 0 || y0 + rows > chunkY + chunkRows) {
                    chunkY = y0;
                    chunkRows = std::min(512, layout.height - y0);
                    chunk.resize(size_t(layout.width) * chunkRows * 3);
                    demo::renderSmearRegion(layout, 0, chunkY, layout.width, chunkRows, chunk.data());
                }
                std::copy_n(chunk.data() + size_t(y0 - chunkY) * layout.width * 3, size_t(rows) * layout.width * 3,
                            out);
            });
        if (!s) {
            std::fprintf(stderr, "error: %s: %s\n", (dir / name).string().c_str(), s.message().c_str());
            return 1;
        }
        for (const auto &c : layout.whiteCells)
            truth << name << ',' << c.x << ',' << c.y << ',' << c.w << ',' << c.h << ',' << demo::cellTypeName(c.type)
                  << ',' << (c.touching ? 1 : 0) << '\n';
        std::printf("%s: %dx%d, %zu white cells\n", (dir / name).string().c_str(), layout.width, layout.height,
                    layout.whiteCells.size());
    }
    return 0;
}

} // namespace cytosae::cli
