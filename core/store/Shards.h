#pragma once

// Sharded runs: a project's accepted images split into N deterministic parts, each run into
// its own shard database (on another machine, as one task of a cluster job array), then
// merged back into the project. A shard database is an ordinary project database holding
// only its shard's images and patients, with the project's ids, plus meta keys `shard`
// ("I/N"), `shard_project` and `shard_images`; it is run like any project (resumable).
//
// Threads: each function opens its own connections; call from one thread (not the GUI's).

#include "common/Progress.h"
#include "common/Result.h"

#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::store {

// Shard `index` of `count`, 1-based (a Slurm array task id 1..N maps to it directly).
struct ShardSpec {
    int index = 1;
    int count = 1;
};

// "I/N" with 1 <= I <= N <= 100000; the message says what is wrong otherwise.
Result<ShardSpec> parseShardSpec(const std::string &text);
std::string toString(const ShardSpec &spec);

// The accepted images of shard I/N are those whose image id % N == I - 1: deterministic,
// independent of the order of the shard jobs, and balanced for any import order.
//
// Creates the shard database `shardPath` (or reopens it to resume: it must be the same
// shard of the same project) and copies the shard's images and their patients from the
// project, which is only read. Returns the number of images in the shard.
Result<int64_t> prepareShard(const std::string &projectPath, const std::string &shardPath, const ShardSpec &spec);

struct MergeReport {
    int64_t runId = 0; // the project's new run holding the merged results
    int shards = 0;
    int64_t images = 0; // images with results
    int64_t failed = 0; // images the shards recorded as failed (run_error)
    std::string device; // what the shards ran on
};

// Merges finished shard databases into the project as one new run, in one transaction.
// Refuses, writing nothing, and lists every problem found when: a file is not a shard or
// its run did not finish, the shards disagree on the ViT or SAE (sha256) or on the run
// settings (top-k, threshold), shards are of different N or one is given twice, an image
// is in two shards or in none, a shard's image differs from the project's (another
// project), or the project already has results for these models and settings. Then
// recomputes the concept statistics of the new run when computeStats is set. Progress
// ("merge", images copied) is reported on the calling thread.
Result<MergeReport> mergeShards(const std::string &projectPath, const std::vector<std::string> &shardPaths,
                                bool computeStats = true, const ProgressCallback &progress = {});

} // namespace cytosae::store
