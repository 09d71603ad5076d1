#include "pipeline/Importer.h"

#include "common/Sha256.h"
#include "imaging/ImageDecoder.h"
#include "store/ProjectDb.h"

#include <algorithm>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_set>

namespace cytosae::pipeline {

namespace {

bool endsWithCsv(const std::string &path)
{
    if (path.size() < 4)
        return false;
    std::string ext = path.substr(path.size() - 4);
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    return ext == ".csv" || ext == ".tsv";
}

// Reads, hashes and decodes one file; decoding is the quality check.
store::NewImage checkFile(const ImportItem &item, const imaging::DecodeLimits &limits)
{
    store::NewImage img;
    img.path = item.path;
    img.patientCode = item.patientCode;
    img.className = item.className;
    img.diagnosis = item.diagnosis;
    img.metadata = item.metadata;
    std::ifstream in(item.path, std::ios::binary | std::ios::ate);
    if (!in) {
        img.ok = false;
        img.qcReason = "cannot open the file";
        return img;
    }
    const std::streamoff size = in.tellg();
    img.fileSize = size;
    if (size > limits.maxFileBytes) {
        img.ok = false;
        img.qcReason = "file is larger than " + std::to_string(limits.maxFileBytes >> 20) + " MB";
        return img;
    }
    std::vector<uint8_t> bytes(size_t(std::max<std::streamoff>(size, 0)));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char *>(bytes.data()), size)) {
        img.ok = false;
        img.qcReason = "read error";
        return img;
    }
    img.sha256 = sha256Hex(bytes.data(), bytes.size());
    auto decoded = imaging::decodeImageBuffer(bytes, item.path, limits);
    if (!decoded) {
        img.ok = false;
        img.qcReason = decoded.message();
        return img;
    }
    img.width = decoded->image.width;
    img.height = decoded->image.height;
    img.channels = decoded->info.sourceChannels;
    img.bitDepth = decoded->info.sourceBitDepth;
    for (const auto &note : decoded->info.notes)
        img.qcReason += (img.qcReason.empty() ? "" : "; ") + note;
    return img;
}

} // namespace

Result<ImportReport> importImages(store::ProjectDb &db, const ImportOptions &options, const ProgressCallback &progress,
                                  const std::atomic<bool> *cancel)
{
    ImportReport report;
    Result<ScanResult> scan = Error("");
    if (endsWithCsv(options.source)) {
        scan = readManifest(options.source);
    } else {
        ScanOptions so;
        so.layout = options.layout;
        so.followSymlinks = options.followSymlinks;
        scan = scanFolder(options.source, so);
    }
    if (!scan)
        return scan.error().withContext(options.source);
    report.issues = scan->issues;
    report.found = int64_t(scan->items.size());

    if (!options.patientTable.empty()) {
        std::vector<ScanIssue> issues;
        auto rows = readPatientTable(options.patientTable, &issues);
        if (!rows)
            return rows.error().withContext(options.patientTable);
        report.issues.insert(report.issues.end(), issues.begin(), issues.end());
        for (const PatientRow &row : *rows) {
            auto id = db.upsertPatient(row.code, row.diagnosis, row.metadata);
            if (!id)
                return id.error().withContext(options.patientTable);
            ++report.patientsUpdated;
        }
    }

    auto existing = db.allImagePaths();
    if (!existing)
        return existing.error();
    const std::unordered_set<std::string> known(existing->begin(), existing->end());
    std::vector<const ImportItem *> todo;
    for (const ImportItem &item : scan->items) {
        if (known.count(item.path))
            ++report.alreadyPresent;
        else
            todo.push_back(&item);
    }

    imaging::DecodeLimits limits;
    limits.maxPixels = options.maxPixels;
    ProgressMeter meter("import", int64_t(todo.size()), progress);
    const int threads = std::max(1, options.threads > 0 ? options.threads : int(std::thread::hardware_concurrency()));
    constexpr size_t kChunk = 256; // files checked, then written in one transaction
    for (size_t first = 0; first < todo.size(); first += kChunk) {
        if (cancel && cancel->load()) {
            report.cancelled = true;
            break;
        }
        const size_t n = std::min(kChunk, todo.size() - first);
        std::vector<store::NewImage> checked(n);
        std::atomic<size_t> next{0};
        auto work = [&] {
            for (size_t i = next++; i < n; i = next++) {
                try {
                    checked[i] = checkFile(*todo[first + i], limits);
                } catch (const std::exception &e) { // e.g. bad_alloc: this file fails, the import goes on
                    checked[i].path = todo[first + i]->path;
                    checked[i].ok = false;
                    checked[i].qcReason = std::string("cannot check the file: ") + e.what();
                }
            }
        };
        std::vector<std::thread> pool;
        for (int t = 1; t < threads; ++t)
            pool.emplace_back(work);
        work();
        for (auto &t : pool)
            t.join();
        auto counts = db.addImages(checked);
        if (!counts)
            return counts.error();
        report.added += counts->added;
        report.rejected += counts->rejected;
        report.alreadyPresent += counts->alreadyPresent;
        for (const auto &img : checked)
            if (!img.ok)
                report.rejectedFiles.push_back({img.path, img.qcReason});
        meter.report(int64_t(first + n));
    }
    return report;
}

} // namespace cytosae::pipeline
