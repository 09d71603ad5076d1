#pragma once

namespace cytosae::cli {

// Each returns the process exit code: 0 ok, 1 some input failed, 2 usage error.
int embedCommand(int argc, char **argv);

} // namespace cytosae::cli
