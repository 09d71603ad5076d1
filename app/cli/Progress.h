#pragma once

#include "common/Progress.h"

namespace cytosae::cli {

// A progress bar on stderr when it is a terminal, otherwise a line every few seconds.
ProgressCallback stderrProgress();
void finishProgress();

} // namespace cytosae::cli
