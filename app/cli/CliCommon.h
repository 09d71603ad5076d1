#pragma once

// Helpers the project subcommands share: usage errors, --help, opening a project and picking
// its run. Each prints its own message.

#include "CliArgs.h"
#include "model/Engine.h"
#include "store/ProjectDb.h"

#include <cstdio>
#include <optional>
#include <string>

namespace cytosae::cli {

int usageError(const char *cmd, const std::string &msg, const char *help);
// Parses options from argv[2]; false when the caller should return exitCode (error or --help).
bool parseOrHelp(CliArgs &args, int argc, char **argv, const char *cmd, const char *help, int &exitCode);
Result<store::ProjectDb> openProject(const std::string &path, store::ProjectDb::OpenMode mode);
// --run ID or the project's newest finished run.
Result<store::RunRecord> pickRun(store::ProjectDb &db, CliArgs &args);
// An import's scan warnings and rejected files, one line each on stderr.
template <typename Report>
void printImportProblems(const Report &report)
{
    for (const auto &issue : report.issues)
        std::fprintf(stderr, "warning: %s: %s\n", issue.path.c_str(), issue.message.c_str());
    for (const auto &r : report.rejectedFiles)
        std::fprintf(stderr, "rejected: %s: %s\n", r.path.c_str(), r.reason.c_str());
}

// --device (auto|cpu|cuda) into `device`; false with `error` set on anything else.
bool deviceOption(const CliArgs &args, model::DeviceChoice &device, std::string &error);
// --device and --precision (fp32|bf16|auto, default auto) into the engine's parameters.
bool engineOptions(const CliArgs &args, model::EngineParams &params, std::string &error);

bool openProjectRun(const std::string &path, store::ProjectDb::OpenMode mode, CliArgs &args,
                    std::optional<store::ProjectDb> &db, store::RunRecord &run);

} // namespace cytosae::cli
