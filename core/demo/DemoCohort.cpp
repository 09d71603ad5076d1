#include "io/Csv.h"
#include "demo/DemoCohort.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>

namespace cytosae::demo {

namespace fs = std::filesystem;

namespace {

// Differentials in CellType order:
// seg, band, lymph, mono, eos, baso, myeloblast, promyelocyte, atypical promyelocyte, vacuolated mono.
using Mix = std::array<double, kCellTypeCount>;

// Normal adult differential.
constexpr Mix kControlMix{0.60, 0.05, 0.25, 0.06, 0.03, 0.01, 0, 0, 0, 0};
// Hypergranular APL: abnormal promyelocytes, most with Auer rods or faggots.
constexpr Mix kAplMix{0.06, 0.02, 0.08, 0.02, 0, 0, 0.04, 0.30, 0.48, 0};
// AML with maturation arrest at the blast stage; some blasts carry single Auer rods.
constexpr Mix kAmlBlastMix{0.10, 0.03, 0.15, 0.04, 0.01, 0, 0.65, 0.02, 0, 0};
// Chronic-phase CML: left shift with raised eosinophils and basophils, few blasts.
constexpr Mix kCmlMix{0.42, 0.18, 0.06, 0.03, 0.08, 0.08, 0.03, 0.12, 0, 0};
// Monocytic leukaemia: monocytes and vacuolated monocytes dominate.
constexpr Mix kMonocyticMix{0.12, 0.03, 0.10, 0.40, 0.01, 0, 0.04, 0, 0, 0.30};

const Mix *mixFor(const std::string &diagnosis)
{
    if (diagnosis == "control")
        return &kControlMix;
    if (diagnosis == "APL")
        return &kAplMix;
    if (diagnosis == "AML_blast")
        return &kAmlBlastMix;
    if (diagnosis == "CML_like")
        return &kCmlMix;
    if (diagnosis == "monocytic")
        return &kMonocyticMix;
    return nullptr;
}

double unitFrom(uint64_t bits)
{
    return double(bits >> 11) * 0x1.0p-53;
}

// Counter-based draws: value k of a patient depends only on (seed, k), never on how many
// values were drawn before, so adding a draw later cannot reshuffle existing cohorts.
double normalFrom(uint64_t seed, uint64_t k)
{
    const double u1 = std::max(unitFrom(mixSeed(seed, 2 * k)), 1e-300);
    const double u2 = unitFrom(mixSeed(seed, 2 * k + 1));
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * 3.14159265358979323846 * u2);
}

constexpr uint64_t kTypeSalt = 0x7E11'7E11'7E11'7E11ull;

using io::csvField;

std::string ioError()
{
    return errno ? std::strerror(errno) : "I/O error";
}

Status writeFile(const fs::path &path, const std::vector<uint8_t> &bytes)
{
    errno = 0;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out)
        return Error(path.string() + ": cannot create file: " + ioError());
    out.write(reinterpret_cast<const char *>(bytes.data()), std::streamsize(bytes.size()));
    out.close();
    if (!out)
        return Error(path.string() + ": cannot write file: " + ioError());
    return Status::success();
}

// Encoding in memory and writing ourselves gives a real reason on failure; cv::imwrite only
// says false.
Status writePng(const fs::path &path, const cv::Mat &image)
{
    std::vector<uint8_t> bytes;
    try {
        if (!cv::imencode(".png", image, bytes))
            return Error(path.string() + ": PNG encoding failed");
    } catch (const cv::Exception &e) {
        return Error(path.string() + ": PNG encoding failed: " + e.what());
    }
    return writeFile(path, bytes);
}

Status makeFolder(const fs::path &path)
{
    std::error_code ec;
    fs::create_directories(path, ec);
    if (ec)
        return Error(path.string() + ": cannot create folder: " + ec.message());
    return Status::success();
}

bool safeCode(const std::string &code)
{
    if (code.empty() || code == "masks")
        return false;
    return std::all_of(code.begin(), code.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

Status validate(const std::vector<PatientSpec> &patients, const CohortWriteOptions &options)
{
    if (options.cellSize < 32 || options.cellSize > 1024)
        return Error("cell size " + std::to_string(options.cellSize) + " is outside 32..1024");
    std::set<std::string> seen;
    for (const PatientSpec &p : patients) {
        const std::string who = "patient '" + p.code + "'";
        if (!safeCode(p.code))
            return Error(who + ": codes are folder names: use letters, digits, '_' or '-' (and not 'masks')");
        if (!seen.insert(p.code).second)
            return Error(who + ": appears twice");
        if (p.cellMix.size() != size_t(kCellTypeCount))
            return Error(who + ": cell mix has " + std::to_string(p.cellMix.size()) + " entries, expected " +
                         std::to_string(kCellTypeCount));
        double sum = 0;
        for (double v : p.cellMix) {
            if (!std::isfinite(v) || v < 0)
                return Error(who + ": cell mix entries must be finite and non-negative");
            sum += v;
        }
        if (p.cells > 0 && !(sum > 0))
            return Error(who + ": cell mix is all zero");
        if (p.cells < 0)
            return Error(who + ": negative cell count");
    }
    return Status::success();
}

cv::Mat maskMat(const Mask &m)
{
    return cv::Mat(m.height, m.width, CV_8UC1, const_cast<uint8_t *>(m.pixels.data()));
}

} // namespace

const std::vector<DemoGroup> &demoGroups()
{
    static const std::vector<DemoGroup> groups{
        {"control", "CTL"}, {"APL", "APL"}, {"AML_blast", "AMB"}, {"CML_like", "CML"}, {"monocytic", "MON"}};
    return groups;
}

std::vector<double> baseCellMix(const std::string &diagnosis)
{
    const Mix *mix = mixFor(diagnosis);
    return mix ? std::vector<double>(mix->begin(), mix->end()) : std::vector<double>{};
}

std::vector<PatientSpec> demoCohort(int patientsPerGroup, int cellsPerPatient, uint64_t seed)
{
    std::vector<PatientSpec> out;
    const std::vector<DemoGroup> &groups = demoGroups();
    for (size_t g = 0; g < groups.size(); ++g) {
        const Mix &base = *mixFor(groups[g].diagnosis);
        for (int i = 1; i <= patientsPerGroup; ++i) {
            PatientSpec p;
            char code[32];
            std::snprintf(code, sizeof code, "%s%02d", groups[g].codePrefix, i);
            p.code = code;
            p.diagnosis = groups[g].diagnosis;
            p.cells = std::max(0, cellsPerPatient);
            p.seed = mixSeed(seed, uint64_t(g) * 1'000'003u + uint64_t(i));

            // Disease burden varies: some patients keep more normal haematopoiesis. Then every
            // proportion wobbles multiplicatively, which keeps absent types absent.
            const double burden = g == 0 ? 0.0 : 0.3 * unitFrom(mixSeed(p.seed, 0xB0DE));
            p.cellMix.resize(kCellTypeCount);
            double sum = 0;
            for (int t = 0; t < kCellTypeCount; ++t) {
                const double v = (1 - burden) * base[size_t(t)] + burden * kControlMix[size_t(t)];
                p.cellMix[size_t(t)] = v * std::exp(0.25 * normalFrom(p.seed, uint64_t(t)));
                sum += p.cellMix[size_t(t)];
            }
            for (double &v : p.cellMix)
                v /= sum;
            out.push_back(std::move(p));
        }
    }
    return out;
}

CohortImage cohortImage(const PatientSpec &patient, int index)
{
    CohortImage img;
    img.seed = mixSeed(patient.seed, uint64_t(index));
    double total = 0;
    for (double v : patient.cellMix)
        total += std::max(0.0, v);
    const double target = unitFrom(mixSeed(img.seed, kTypeSalt)) * total;
    double cumulative = 0;
    int last = 0;
    for (int t = 0; t < int(patient.cellMix.size()) && t < kCellTypeCount; ++t) {
        const double v = std::max(0.0, patient.cellMix[size_t(t)]);
        if (v <= 0)
            continue;
        last = t;
        cumulative += v;
        if (target < cumulative) {
            img.type = CellType(t);
            return img;
        }
    }
    img.type = CellType(last); // rounding at the very top of the range
    return img;
}

Result<int> writeDemoCohort(const std::string &root, const std::vector<PatientSpec> &patients,
                            const CohortWriteOptions &options, const std::function<void(int, int)> &progress,
                            const std::atomic<bool> *cancel)
{
    if (root.empty())
        return Error("no output folder given for the demo cohort");
    if (Status s = validate(patients, options); !s)
        return s.error();

    const fs::path rootPath(root);
    if (Status s = makeFolder(rootPath); !s)
        return s.error();
    if (options.writeMasks) {
        if (Status s = makeFolder(rootPath / "masks"); !s)
            return s.error();
    }

    int total = 0;
    for (const PatientSpec &p : patients)
        total += p.cells;

    std::string manifest = "path,patient,class,diagnosis,seed\n";
    std::string patientTable = "patient,diagnosis\n";
    int written = 0;
    bool cancelled = false;
    // Writes the CSVs for whatever exists, so that stopping early still leaves a coherent folder.
    auto finish = [&]() -> Result<int> {
        if (Status s = writeFile(rootPath / "patients.csv", {patientTable.begin(), patientTable.end()}); !s)
            return s.error();
        if (Status s = writeFile(rootPath / "manifest.csv", {manifest.begin(), manifest.end()}); !s)
            return s.error();
        return written;
    };

    const CellOptions cellOptions{options.cellSize};
    for (const PatientSpec &p : patients) {
        if (cancel && cancel->load()) {
            cancelled = true;
            break;
        }
        const fs::path folder = rootPath / p.code;
        if (Status s = makeFolder(folder); !s)
            return s.error();
        patientTable += csvField(p.code) + "," + csvField(p.diagnosis) + "\n";

        const int digits = std::max(4, int(std::to_string(std::max(0, p.cells - 1)).size()));
        for (int i = 0; i < p.cells; ++i) {
            if (cancel && cancel->load()) {
                cancelled = true;
                break;
            }
            const CohortImage img = cohortImage(p, i);
            std::string index = std::to_string(i);
            index.insert(0, size_t(digits) - std::min(index.size(), size_t(digits)), '0');
            const std::string stem = p.code + "_" + index + "_" + cellTypeName(img.type);

            SyntheticCell cell;
            cv::Mat bgr;
            // Only memory exhaustion can throw here; it must not escape core.
            try {
                cell = generateCell(img.type, img.seed, cellOptions);
                cv::Mat rgb(cell.height, cell.width, CV_8UC3, cell.rgb.data());
                cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
            } catch (const std::exception &e) {
                return Error(stem + ": cannot generate the image: " + e.what());
            }
            if (Status s = writePng(folder / (stem + ".png"), bgr); !s)
                return s.error();
            if (options.writeMasks) {
                for (int part = 0; part < kPartCount; ++part) {
                    const Mask &m = cell.parts[size_t(part)];
                    if (maskArea(m) == 0)
                        continue;
                    const fs::path path = rootPath / "masks" / (stem + "_" + partName(Part(part)) + ".png");
                    if (Status s = writePng(path, maskMat(m)); !s)
                        return s.error();
                }
            }
            manifest += csvField(p.code + "/" + stem + ".png") + "," + csvField(p.code) + "," + cellTypeName(img.type) +
                        "," + csvField(p.diagnosis) + "," + std::to_string(img.seed) + "\n";
            ++written;
            if (progress)
                progress(written, total);
        }
        if (cancelled)
            break;
    }
    return finish();
}

} // namespace cytosae::demo
