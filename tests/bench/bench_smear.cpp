// Smear detection benchmark: recall and precision (IoU 0.5) on generated fields with known
// white cells, whole-image and tiled; then a large generated field (default 20,000 x 20,000,
// written as a deflate TIFF strip by strip) detected tile by tile from the file, with time,
// peak memory (getrusage) and the ratio against a baseline measured in the same run: a plain
// read + cv::cvtColor + cv::threshold pass over the same pixels, band by band.
//
//   bench_smear [--seeds N] [--first SEED] [--big SIDE] [--dir DIR] [--keep] [--verbose]

#include "demo/SmearField.h"
#include "imaging/CellDetector.h"
#include "imaging/SmearSource.h"

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

using namespace cytosae;

namespace {

double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peakRssMb()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0; // Linux: kilobytes
}

std::vector<imaging::BoxI> truthBoxes(const demo::SmearLayout &layout)
{
    std::vector<imaging::BoxI> boxes;
    for (const auto &t : layout.whiteCells)
        boxes.push_back({t.x, t.y, t.w, t.h});
    return boxes;
}

} // namespace

int main(int argc, char **argv)
{
    int seeds = 10, big = 20000, first = 1;
    bool keep = false, verbose = false;
    std::string dir = std::filesystem::temp_directory_path().string(), detectOnly;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--seeds" && i + 1 < argc)
            seeds = std::atoi(argv[++i]);
        else if (a == "--big" && i + 1 < argc)
            big = std::atoi(argv[++i]);
        else if (a == "--dir" && i + 1 < argc)
            dir = argv[++i];
        else if (a == "--first" && i + 1 < argc)
            first = std::atoi(argv[++i]);
        else if (a == "--detect" && i + 1 < argc)
            detectOnly = argv[++i];
        else if (a == "--keep")
            keep = true;
        else if (a == "--verbose")
            verbose = true;
        else {
            std::fprintf(stderr, "usage: bench_smear [--seeds N] [--first SEED] [--big SIDE] [--dir DIR] [--keep] "
                                 "[--verbose] | --detect FIELD.tif\n");
            return 2;
        }
    }

    imaging::CellDetectorOptions options;
    if (!detectOnly.empty()) {
        auto source = imaging::SmearSource::open(detectOnly);
        if (!source) {
            std::fprintf(stderr, "%s: %s\n", detectOnly.c_str(), source.message().c_str());
            return 1;
        }
        int64_t cells = 0;
        auto stats = imaging::detectCellsTiled(**source, options,
                                               [&](const imaging::CellDetection &, const imaging::RgbImage &) {
                                                   ++cells;
                                                   return true;
                                               });
        if (!stats) {
            std::fprintf(stderr, "%s\n", stats.message().c_str());
            return 1;
        }
        const double mp = double((*source)->width()) * (*source)->height() / 1e6;
        std::printf("%s: %dx%d, %lld cells in %.1f s (%.1f ms/MP), largest band %.0f MB, peak RSS %.0f MB\n",
                    detectOnly.c_str(), (*source)->width(), (*source)->height(), static_cast<long long>(cells),
                    stats->seconds, 1000 * stats->seconds / mp, double(stats->bandBytes) / 1e6, peakRssMb());
        return 0;
    }
    std::printf("Detection on generated %dx%d fields (IoU 0.5), tiles of %d px for the tiled column\n",
                demo::SmearFieldOptions{}.width, demo::SmearFieldOptions{}.height, 384);
    std::printf("%6s %6s %10s %10s %8s %12s %12s %8s\n", "seed", "cells", "touching", "detected", "recall", "precision",
                "tiled recall", "tiled prec");
    imaging::DetectionScore total, totalTiled;
    for (int s = first; s < first + seeds; ++s) {
        const demo::SmearField field = demo::generateSmearField(uint64_t(s));
        const imaging::RgbImage image{field.layout.width, field.layout.height, field.rgb};
        auto found = imaging::detectCells(image, options, true);
        if (!found) {
            std::fprintf(stderr, "%s\n", found.message().c_str());
            return 1;
        }
        const auto truth = truthBoxes(field.layout);
        const auto score = imaging::scoreDetections(truth, *found);
        auto source = imaging::SmearSource::fromMemory(image);
        imaging::CellDetectorOptions tiledOptions = options;
        tiledOptions.tileSize = 384;
        std::vector<imaging::CellDetection> tiled;
        auto stats = imaging::detectCellsTiled(*source, tiledOptions,
                                               [&](const imaging::CellDetection &d, const imaging::RgbImage &) {
                                                   tiled.push_back(d);
                                                   return true;
                                               });
        if (!stats) {
            std::fprintf(stderr, "%s\n", stats.message().c_str());
            return 1;
        }
        const auto tiledScore = imaging::scoreDetections(truth, tiled);
        if (verbose) // the known cells missed, with the best overlapping detection
            for (const auto &t : field.layout.whiteCells) {
                double best = 0;
                imaging::CellDetection near;
                for (const auto &d : *found)
                    if (const double iou = imaging::boxIou({t.x, t.y, t.w, t.h}, {d.x, d.y, d.w, d.h}); iou > best)
                        best = iou, near = d;
                if (best < 0.5)
                    std::printf("  missed %s%s at %d,%d %dx%d; best IoU %.2f (%d,%d %dx%d)\n",
                                demo::cellTypeName(t.type), t.touching ? " (touching)" : "", t.x, t.y, t.w, t.h, best,
                                near.x, near.y, near.w, near.h);
            }
        int touching = 0;
        for (const auto &t : field.layout.whiteCells)
            touching += t.touching;
        std::printf("%6d %6d %10d %10d %8.3f %12.3f %12.3f %8.3f\n", s, score.truth, touching, score.detected,
                    score.recall(), score.precision(), tiledScore.recall(), tiledScore.precision());
        total.truth += score.truth, total.detected += score.detected, total.matched += score.matched;
        totalTiled.truth += tiledScore.truth, totalTiled.detected += tiledScore.detected,
            totalTiled.matched += tiledScore.matched;
    }
    std::printf("%6s %6d %10s %10d %8.3f %12.3f %12.3f %8.3f\n\n", "all", total.truth, "", total.detected,
                total.recall(), total.precision(), totalTiled.recall(), totalTiled.precision());

    if (big <= 0)
        return 0;
    // The large field: planned, rendered 512 rows at a time and written as TIFF strips.
    const std::string path = (std::filesystem::path(dir) / ("bench_smear_" + std::to_string(big) + ".tif")).string();
    demo::SmearFieldOptions fo;
    fo.width = fo.height = big;
    double t0 = now();
    const demo::SmearLayout layout = demo::planSmearField(7, fo);
    const double planSeconds = now() - t0;
    t0 = now();
    {
        std::vector<uint8_t> chunk;
        int chunkY = -1, chunkRows = 0;
        constexpr int kChunk = 512;
        Status s = imaging::writeTiffByStrips(path, big, big, [&](int y0, int rows, uint8_t *out) {
            if (chunkY < 0 || y0 + rows > chunkY + chunkRows) {
                chunkY = y0;
                chunkRows = std::min(kChunk, big - y0);
                chunk.resize(size_t(big) * chunkRows * 3);
                demo::renderSmearRegion(layout, 0, chunkY, big, chunkRows, chunk.data());
            }
            std::memcpy(out, chunk.data() + size_t(y0 - chunkY) * big * 3, size_t(rows) * big * 3);
        });
        if (!s) {
            std::fprintf(stderr, "%s: %s\n", path.c_str(), s.message().c_str());
            return 1;
        }
    }
    const double writeSeconds = now() - t0;
    const double rssAfterWrite = peakRssMb();
    const double mp = double(big) * big / 1e6;
    std::printf("Large field %dx%d (%.0f MP, %zu white cells): planned in %.1f s, rendered + written in %.1f s "
                "(%.0f MB file), peak RSS so far %.0f MB\n",
                big, big, mp, layout.whiteCells.size(), planSeconds, writeSeconds,
                double(std::filesystem::file_size(path)) / 1e6, rssAfterWrite);

    // Baseline: the same bands read from the file, converted to grey and thresholded.
    auto opened = imaging::SmearSource::open(path);
    if (!opened) {
        std::fprintf(stderr, "%s: %s\n", path.c_str(), opened.message().c_str());
        return 1;
    }
    imaging::SmearSource &source = **opened;
    t0 = now();
    int64_t dark = 0;
    {
        const int T = options.tileSize, ov = imaging::tileOverlap(options);
        std::vector<uint8_t> band;
        for (int by = 0; by < big; by += T) {
            const int y0 = std::max(0, by - ov), y1 = std::min(big, by + T + ov);
            band.resize(size_t(big) * (y1 - y0) * 3);
            if (Status s = source.readRows(y0, y1 - y0, band.data()); !s) {
                std::fprintf(stderr, "%s\n", s.message().c_str());
                return 1;
            }
            cv::Mat rgb(y1 - y0, big, CV_8UC3, band.data()), grey, bin;
            cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
            cv::threshold(grey, bin, 128, 255, cv::THRESH_BINARY_INV);
            dark += cv::countNonZero(bin);
        }
    }
    const double baseSeconds = now() - t0;

    std::vector<imaging::CellDetection> found;
    auto stats =
        imaging::detectCellsTiled(source, options, [&](const imaging::CellDetection &d, const imaging::RgbImage &) {
            found.push_back(d);
            return true;
        });
    if (!stats) {
        std::fprintf(stderr, "%s\n", stats.message().c_str());
        return 1;
    }
    const auto score = imaging::scoreDetections(truthBoxes(layout), found);
    std::printf("Detection from the TIFF, %d tiles of %d px (+%d overlap), largest band %.0f MB:\n", stats->tiles,
                options.tileSize, imaging::tileOverlap(options), double(stats->bandBytes) / 1e6);
    std::printf("  detector  %7.1f s  %6.1f ms/MP   recall %.3f precision %.3f (%d cells, %d found)\n", stats->seconds,
                1000 * stats->seconds / mp, score.recall(), score.precision(), score.truth, score.detected);
    std::printf("  baseline  %7.1f s  %6.1f ms/MP   (read + cvtColor + threshold; %lld dark px)\n", baseSeconds,
                1000 * baseSeconds / mp, static_cast<long long>(dark));
    std::printf("  ratio detector / baseline: %.2f\n", stats->seconds / std::max(1e-9, baseSeconds));
    std::printf("  peak RSS of the whole process: %.0f MB (limit 2048 MB)\n", peakRssMb());
    if (!keep)
        std::filesystem::remove(path);
    return 0;
}
