#include "pipeline/SmearImporter.h"

#include "common/Sha256.h"
#include "io/JsonWriter.h"
#include "store/ProjectDb.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cytosae::pipeline {

namespace fs = std::filesystem;

namespace {

bool endsWithCsv(const std::string &path)
{
    std::string ext = fs::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return ext == ".csv" || ext == ".tsv";
}

std::string detectorJson(const imaging::CellDetectorOptions &o)
{
    std::ostringstream out;
    io::JsonWriter json(out, false);
    json.beginObject();
    json.key("microns_per_pixel").value(o.micronsPerPixel);
    json.key("crop_microns").value(o.cropMicrons);
    json.key("crop_size").value(int64_t(o.cropSize));
    json.key("min_cell_diameter_um").value(o.minCellDiameterUm);
    json.key("max_cell_diameter_um").value(o.maxCellDiameterUm);
    json.key("min_nucleus_area_um2").value(o.minNucleusAreaUm2);
    json.key("tile_size").value(int64_t(o.tileSize));
    json.endObject();
    return out.str();
}

Status writeFile(const std::string &path, const std::vector<uint8_t> &bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out || !out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size())))
        return Error("cannot write " + path);
    return Status::success();
}

} // namespace

Result<SmearImportReport> importSmears(store::ProjectDb &db, const SmearImportOptions &options,
                                       const ProgressCallback &progress, const std::atomic<bool> *cancel)
{
    SmearImportReport report;
    std::error_code ec;
    ScanResult scan;
    if (fs::is_regular_file(options.source, ec) && !endsWithCsv(options.source)) {
        ImportItem item;
        item.path = fs::absolute(options.source, ec).lexically_normal().string();
        scan.items.push_back(item);
    } else if (endsWithCsv(options.source)) {
        auto r = readManifest(options.source);
        if (!r)
            return r.error().withContext(options.source);
        scan = std::move(r.value());
    } else {
        ScanOptions so;
        so.layout = options.layout;
        so.followSymlinks = options.followSymlinks;
        auto r = scanFolder(options.source, so);
        if (!r)
            return r.error().withContext(options.source);
        scan = std::move(r.value());
    }
    report.issues = scan.issues;
    report.found = int64_t(scan.items.size());

    // Absolute, like the paths of single-cell images: a project opened from another working
    // folder (or a relative project path on the command line) must find its crops.
    std::error_code absEc;
    const std::string cellsRoot =
        fs::absolute(options.cellsDir.empty() ? db.path() + ".cells" : options.cellsDir, absEc).lexically_normal().string();
    if (absEc)
        return Error("cannot resolve the folder for the cell crops (" + absEc.message() + ")");
    const std::string settings = detectorJson(options.detector);
    ProgressMeter meter("smears", report.found, progress);
    int64_t done = 0;
    for (const ImportItem &item : scan.items) {
        if (cancel && cancel->load()) {
            report.cancelled = true;
            break;
        }
        auto known = db.smearIdByPath(item.path);
        if (!known)
            return known.error();
        if (known->has_value()) {
            ++report.alreadyPresent;
            meter.report(++done);
            continue;
        }
        store::NewSmear smear;
        smear.path = item.path;
        smear.patientCode = options.patientCode.empty() ? item.patientCode : options.patientCode;
        smear.diagnosis = item.diagnosis;
        smear.micronsPerPixel = options.detector.micronsPerPixel;
        smear.detectorJson = settings;
        auto reject = [&](const std::string &reason) -> Status {
            smear.ok = false;
            smear.qcReason = reason;
            report.rejectedFiles.push_back({item.path, reason});
            ++report.rejected;
            auto id = db.addSmear(smear, {});
            return id ? Status::success() : Status(id.error());
        };

        smear.fileSize = int64_t(fs::file_size(item.path, ec));
        auto hash = sha256File(item.path);
        if (!hash) {
            if (Status s = reject(hash.message()); !s)
                return s.error();
            meter.report(++done);
            continue;
        }
        smear.sha256 = *hash;
        auto source = imaging::SmearSource::open(item.path, options.limits);
        if (!source) {
            if (Status s = reject(source.message()); !s)
                return s.error();
            meter.report(++done);
            continue;
        }
        smear.width = (*source)->width();
        smear.height = (*source)->height();

        // Crops go to their own folder; cells are added as images in chunks as they come.
        const std::string stem = fs::path(item.path).stem().string();
        const fs::path folder = fs::path(cellsRoot) / (stem + "-" + smear.sha256.substr(0, 8));
        fs::create_directories(folder, ec);
        if (ec)
            return Error("cannot create the cell folder " + folder.string() + ": " + ec.message());
        std::vector<store::NewImage> pending;
        std::vector<store::SmearCellLink> links;
        std::string writeError;
        auto flush = [&]() -> bool {
            if (pending.empty())
                return true;
            auto counts = db.addImages(pending);
            if (!counts) {
                writeError = counts.message();
                return false;
            }
            report.cellsAdded += counts->added;
            pending.clear();
            return true;
        };
        int n = 0;
        auto onCell = [&](const imaging::CellDetection &d, const imaging::RgbImage &crop) -> bool {
            if (cancel && cancel->load())
                return false;
            char name[96];
            std::snprintf(name, sizeof name, "cell_%05d_x%d_y%d.png", n++, d.x, d.y);
            const std::string path = (folder / name).string();
            const std::vector<uint8_t> png = imaging::encodePng(crop);
            if (png.empty()) {
                writeError = "cannot encode the crop " + path;
                return false;
            }
            if (Status s = writeFile(path, png); !s) {
                writeError = s.message();
                return false;
            }
            store::NewImage img;
            img.path = path;
            img.sha256 = sha256Hex(png.data(), png.size());
            img.fileSize = int64_t(png.size());
            img.width = crop.width;
            img.height = crop.height;
            img.channels = 3;
            img.bitDepth = 8;
            img.patientCode = smear.patientCode;
            img.diagnosis = smear.diagnosis;
            img.metadata = {{"smear", item.path}};
            pending.push_back(std::move(img));
            links.push_back({path, d.x, d.y, d.w, d.h, d.score});
            return pending.size() < 256 || flush();
        };
        auto detected = imaging::detectCellsTiled(**source, options.detector, onCell, {}, cancel);
        if (detected && !flush())
            detected = Error(writeError);
        if (!detected) {
            if (!writeError.empty())
                return Error(writeError); // the project or the disk failed, not this smear
            if (cancel && cancel->load()) {
                report.cancelled = true;
                break; // the smear is not recorded: importing again detects it again
            }
            if (Status s = reject(detected.message()); !s)
                return s.error();
            meter.report(++done);
            continue;
        }
        auto id = db.addSmear(smear, links);
        if (!id)
            return id.error();
        ++report.added;
        meter.report(++done);
    }
    return report;
}

} // namespace cytosae::pipeline
