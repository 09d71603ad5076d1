#include "pipeline/Runner.h"

#include "imaging/ImageDecoder.h"
#include "io/JsonWriter.h"
#include "pipeline/BoundedQueue.h"
#include "store/ProjectDb.h"

#include <chrono>
#include <sstream>
#include <thread>

namespace cytosae::pipeline {

namespace {

using Clock = std::chrono::steady_clock;

struct Failure {
    int64_t imageId = 0;
    std::string path, message;
};

struct PreparedBatch {
    std::vector<int64_t> imageIds;
    std::vector<float> pixels; // [n, 3, S, S]
    std::vector<Failure> failures;
};

struct WriteBatch {
    std::vector<store::ImageResultRow> rows;
    std::vector<std::pair<int64_t, std::string>> failures;
};

std::string vitConfigJson(const model::VitInfo &v)
{
    std::ostringstream out;
    io::JsonWriter j(out, false);
    j.beginObject();
    j.key("embed_dim").value(int64_t(v.embedDim)).key("depth").value(int64_t(v.depth));
    j.key("num_heads").value(int64_t(v.numHeads)).key("patch_size").value(int64_t(v.patchSize));
    j.key("mlp_hidden").value(int64_t(v.mlpHidden)).key("swiglu").value(v.swiglu);
    j.key("num_registers").value(int64_t(v.numRegisters)).key("image_size").value(int64_t(v.imageSize));
    j.key("source").value(v.source);
    j.endObject();
    return out.str();
}

std::string saeConfigJson(const model::SaeInfo &s)
{
    std::ostringstream out;
    io::JsonWriter j(out, false);
    j.beginObject();
    j.key("d_in").value(int64_t(s.dIn)).key("d_sae").value(int64_t(s.dSae));
    j.key("block_index").value(int64_t(s.blockIndex));
    j.key("cfg").beginObject();
    for (const auto &[k, v] : s.config)
        j.key(k).value(v);
    j.endObject();
    j.endObject();
    return out.str();
}

store::ImageResultRow toRow(int64_t imageId, const model::ImageActivations &a, int dSae)
{
    store::ImageResultRow row;
    row.imageId = imageId;
    row.reconError = a.reconError;
    row.reconMse = a.reconMse;
    row.tokensBlob = store::encodeTokenTopK(a.numTokens, a.k, a.topIds.data(), a.topValues.data(), dSae - 1);
    row.concepts.reserve(a.latents.size());
    for (const auto &l : a.latents)
        row.concepts.push_back({l.latent, l.mean, l.maxPatch, l.patchesAbove});
    row.cls = a.cls;
    return row;
}

} // namespace

Result<RunReport> runProject(const std::string &projectPath, const RunOptions &options,
                             const ProgressCallback &progress, const std::atomic<bool> *cancel)
{
    const auto start = Clock::now();
    RunReport report;
    auto db = store::ProjectDb::open(projectPath, store::ProjectDb::OpenMode::Existing);
    if (!db)
        return db.error().withContext(projectPath);
    if (!db->upgradeBackup().empty()) {
        report.notices.push_back(projectPath + ": upgraded to schema " + std::to_string(store::kSchemaVersion) +
                                 "; the file as it was is kept as " + db->upgradeBackup());
        if (options.notice)
            options.notice(report.notices.back());
    }
    std::shared_ptr<model::Engine> engine = options.loadedEngine;
    if (!engine) {
        auto loaded = model::Engine::load(options.engine);
        if (!loaded)
            return loaded.error();
        engine = std::move(loaded.value());
    }
    model::Engine &eng = *engine;
    const int topK = eng.params().topK;
    const double threshold = eng.params().patchThreshold;
    report.device = eng.deviceName();
    auto passNotices = [&] {
        for (std::string &n : eng.takeNotices()) {
            if (options.notice)
                options.notice(n);
            report.notices.push_back(std::move(n));
        }
    };
    passNotices();

    auto vitId = db->upsertModel("vit", eng.vit().sha256, options.engine.vitPath, vitConfigJson(eng.vit()));
    if (!vitId)
        return vitId.error();
    auto saeId = db->upsertModel("sae", eng.sae().sha256, options.engine.saePath, saeConfigJson(eng.sae()));
    if (!saeId)
        return saeId.error();
    if (topK > 255)
        return Error("at most 255 latents per token can be stored (--top-k)");
    // A run holds one precision: an explicit one resumes only a run computed in it; an
    // undecided auto continues a run in the precision that run settled on.
    auto precisionText = [&] { return std::string(eng.precisionPending() ? "auto" : model::precisionName(eng.precision())); };
    auto existing = db->resumableRun(*vitId, *saeId, topK, threshold, eng.precisionPending() ? "" : precisionText());
    if (!existing)
        return existing.error();
    if (existing->has_value()) {
        const store::RunRecord &previous = **existing;
        report.runId = previous.id;
        report.resumed = true;
        model::Precision settled;
        if (eng.precisionPending() && model::parsePrecision(previous.precision, settled) &&
            settled != model::Precision::Auto)
            eng.settlePrecision(settled, "auto: " + previous.precision + ", the precision run " +
                                             std::to_string(previous.id) + " started in");
        if (Status s = db->setRunStatus(report.runId, "running"); !s)
            return s.error();
    } else {
        auto id = db->createRun(*vitId, *saeId, topK, threshold, eng.sae().dSae, report.device, precisionText());
        if (!id)
            return id.error();
        report.runId = *id;
    }
    std::string storedPrecision = precisionText();
    auto pending = db->pendingImages(report.runId);
    if (!pending)
        return pending.error();
    auto done = db->count("SELECT count(*) FROM activation WHERE run_id = " + std::to_string(report.runId));
    if (!done)
        return done.error();
    report.alreadyDone = *done;

    const int dSae = eng.sae().dSae;
    const int size = eng.vit().imageSize;
    const size_t perImage = size_t(3) * size_t(size) * size_t(size);
    const size_t batchSize = size_t(std::max(1, options.batchSize));
    const size_t batches = (pending->size() + batchSize - 1) / batchSize;
    ProgressMeter meter("run", report.alreadyDone + int64_t(pending->size()), progress);
    meter.setDetail("on " + report.device);
    meter.setAlreadyDone(report.alreadyDone);
    meter.report(report.alreadyDone);

    std::atomic<bool> stop{false};
    auto stopRequested = [&] { return stop.load() || (cancel && cancel->load()); };

    // Readers: decode + Pillow-exact preprocessing, a batch at a time.
    BoundedQueue<PreparedBatch> prepared(2 + size_t(std::max(1, options.readerThreads)));
    std::atomic<size_t> nextBatch{0};
    auto reader = [&] {
        for (size_t b = nextBatch++; b < batches && !stopRequested(); b = nextBatch++) {
            PreparedBatch batch;
            batch.pixels.reserve(batchSize * perImage);
            for (size_t i = b * batchSize; i < std::min(pending->size(), (b + 1) * batchSize); ++i) {
                const store::ImageRecord &img = (*pending)[i];
                auto decoded = imaging::decodeImageFile(img.path);
                if (!decoded) {
                    batch.failures.push_back({img.id, img.path, decoded.message()});
                    continue;
                }
                batch.imageIds.push_back(img.id);
                batch.pixels.resize(batch.imageIds.size() * perImage);
                model::preprocessToChw({decoded->image.pixels.data(), decoded->image.width, decoded->image.height},
                                       size, model::Normalization{},
                                       batch.pixels.data() + (batch.imageIds.size() - 1) * perImage);
            }
            if (!prepared.push(std::move(batch)))
                return;
        }
    };

    // Writer: its own connection, one transaction per batch.
    BoundedQueue<WriteBatch> toWrite(4);
    Status writerStatus;
    std::atomic<int64_t> written{report.alreadyDone};
    std::thread writer([&] {
        // The file was checked when `db` opened it a moment ago.
        auto wdb = store::ProjectDb::open(projectPath, store::ProjectDb::OpenMode::Existing,
                                          store::ProjectDb::Verify::Trusted);
        if (!wdb) {
            writerStatus = wdb.error();
            stop = true;
            toWrite.close();
            return;
        }
        while (auto batch = toWrite.pop()) {
            if (Status s = wdb->writeResults(report.runId, batch->rows, batch->failures); !s) {
                writerStatus = s;
                stop = true;
                toWrite.close();
                return;
            }
            // Failed images count as handled, so progress reaches its total.
            written += int64_t(batch->rows.size() + batch->failures.size());
            meter.report(written.load());
        }
    });

    std::vector<std::thread> readers;
    for (int t = 0; t < std::max(1, options.readerThreads); ++t)
        readers.emplace_back(reader);

    Status engineStatus;
    for (size_t b = 0; b < batches; ++b) {
        if (stopRequested())
            break;
        auto batch = prepared.pop();
        if (!batch)
            break;
        WriteBatch out;
        for (const Failure &f : batch->failures) {
            out.failures.emplace_back(f.imageId, f.message);
            report.failures.emplace_back(f.path, f.message);
        }
        if (!batch->imageIds.empty()) {
            const auto t0 = Clock::now();
            auto result = eng.runPreprocessed(batch->pixels.data(), int(batch->imageIds.size()), size, size, cancel);
            report.inferenceSeconds += std::chrono::duration<double>(Clock::now() - t0).count();
            passNotices();
            if (const std::string now = eng.deviceName(); now != report.device) {
                // A fallback moved the run: the run's row and the progress say where it goes on.
                report.device = now;
                meter.setDetail("on " + now + " (after a CUDA failure)");
                if (auto upd = db->db().prepare("UPDATE run SET device = ? WHERE id = ?")) {
                    upd->bind(1, now).bind(2, report.runId);
                    (void)upd->exec();
                }
            }
            if (!result) {
                if (cancel && cancel->load())
                    break;
                engineStatus = result.error();
                break;
            }
            if (const std::string now = precisionText(); now != storedPrecision) {
                // Precision::Auto settled on its first batch: the run's row records it.
                storedPrecision = now;
                if (Status s = db->setRunPrecision(report.runId, now); !s) {
                    engineStatus = s;
                    break;
                }
            }
            for (size_t i = 0; i < result->size(); ++i)
                out.rows.push_back(toRow(batch->imageIds[i], (*result)[i], dSae));
        }
        report.processed += int64_t(out.rows.size());
        report.failed += int64_t(out.failures.size());
        if (!toWrite.push(std::move(out)))
            break;
    }
    stop = true;
    prepared.close();
    for (auto &t : readers)
        t.join();
    toWrite.close();
    writer.join();

    report.cancelled = cancel && cancel->load();
    if (!writerStatus) {
        (void)db->setRunStatus(report.runId, "failed");
        return Error("writing results failed: " + writerStatus.message());
    }
    if (!engineStatus) {
        (void)db->setRunStatus(report.runId, "failed");
        return engineStatus.error();
    }
    if (report.cancelled) {
        if (Status s = db->setRunStatus(report.runId, "cancelled"); !s)
            return s.error();
    } else {
        if (Status s = db->setRunStatus(report.runId, "done"); !s)
            return s.error();
        if (options.computeStats) {
            ProgressMeter statsMeter("statistics", 1, progress);
            if (Status s = db->computeStats(report.runId); !s)
                return Error("computing concept statistics failed: " + s.message());
            statsMeter.report(1);
        }
    }
    report.precision = precisionText();
    report.precisionReason = eng.precisionReason();
    report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return report;
}

Result<RunReport> runShard(const std::string &projectPath, const std::string &shardPath, const store::ShardSpec &spec,
                           const RunOptions &options, const ProgressCallback &progress, const std::atomic<bool> *cancel)
{
    auto images = store::prepareShard(projectPath, shardPath, spec);
    if (!images)
        return images.error();
    RunOptions shardOptions = options;
    shardOptions.computeStats = false;
    return runProject(shardPath, shardOptions, progress, cancel);
}

} // namespace cytosae::pipeline
