#pragma once

#include <string>

namespace cytosae::cli {

// Each returns the process exit code: 0 ok, 1 some input failed, 2 usage error.
int embedCommand(int argc, char **argv);
int importCommand(int argc, char **argv);
int runCommand(int argc, char **argv);
int mergeCommand(int argc, char **argv);
int statsCommand(int argc, char **argv);
int checkCommand(int argc, char **argv);
int topCommand(int argc, char **argv);
int exportCommand(int argc, char **argv);
int trainSaeCommand(int argc, char **argv);
int trainVitCommand(int argc, char **argv);
int buildDemoModelsCommand(int argc, char **argv);
int demoCommand(int argc, char **argv);
int labelsCommand(int argc, char **argv);
int analyzeCommand(int argc, char **argv);
int importSmearCommand(int argc, char **argv); // import ... --smear
int demoSmearCommand(int argc, char **argv);

// The folder holding the bundled demo model, or empty.
std::string findDemoModelDir();

} // namespace cytosae::cli
