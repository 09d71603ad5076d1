#pragma once

// A run: every accepted image of a project that has no results yet goes through
// decode -> preprocess (reader threads) -> ViT + SAE (this thread, batched) -> writer thread
// (batched transactions). Cancel is checked between batches; a killed run resumes where it
// stopped (each image is stored exactly once: results are committed per batch together with
// the run's counter). At the end the per-latent statistics are recomputed.
//
// Thread: call from a worker thread (never the GUI thread); the progress callback runs on
// the run's writer thread (see common/Progress.h).

#include "common/Progress.h"
#include "common/Result.h"
#include "model/Engine.h"
#include "store/Shards.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace cytosae::pipeline {

struct RunOptions {
    model::EngineParams engine; // vitPath, saePath, device, topK (stored per token), ...
    // An engine already loaded (the GUI keeps one; benchmarks build one in memory). When set,
    // `engine` above is not loaded again and only its paths are recorded.
    std::shared_ptr<model::Engine> loadedEngine;
    int batchSize = 8;
    int readerThreads = 1;
    bool computeStats = true;
    // Called (on the calling thread, between batches) with each degradation the engine made:
    // a CUDA failure that moved the run to the CPU, a batch split after running out of memory.
    std::function<void(const std::string &)> notice;
};

struct RunReport {
    int64_t runId = 0;
    bool resumed = false;
    int64_t alreadyDone = 0; // results present before this call
    int64_t processed = 0;
    int64_t failed = 0;
    std::vector<std::pair<std::string, std::string>> failures; // path, reason
    bool cancelled = false;
    double seconds = 0;
    double inferenceSeconds = 0; // time spent inside the engine
    std::string device;               // where the run ended (after any fallback)
    std::string precision;            // fp32 or bf16 ("auto" if no batch ran to decide it)
    std::string precisionReason;      // why (Engine::precisionReason)
    std::vector<std::string> notices; // what `notice` was told
};

Result<RunReport> runProject(const std::string &projectPath, const RunOptions &options,
                             const ProgressCallback &progress = {}, const std::atomic<bool> *cancel = nullptr);

// One shard of a sharded run (see store/Shards.h): copies shard `spec` of the project's images
// into the shard database `shardPath` (or reopens it) and runs it there like runProject, which
// it resumes the same way. The project is only read; statistics are left to mergeShards.
Result<RunReport> runShard(const std::string &projectPath, const std::string &shardPath, const store::ShardSpec &spec,
                           const RunOptions &options, const ProgressCallback &progress = {},
                           const std::atomic<bool> *cancel = nullptr);

} // namespace cytosae::pipeline
