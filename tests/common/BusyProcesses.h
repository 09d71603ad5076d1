#pragma once

// CPU-bound child processes, for tests and benchmarks of behaviour on a shared machine.

#include <csignal>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

namespace cytosae::testing {

// Forks n children that spin until stopBusy kills them.
inline std::vector<pid_t> startBusy(int n)
{
    std::vector<pid_t> pids;
    for (int i = 0; i < n; ++i) {
        const pid_t pid = fork();
        if (pid == 0) {
            for (volatile unsigned long spin = 0;; spin = spin + 1) {
            }
        }
        pids.push_back(pid);
    }
    return pids;
}

inline void stopBusy(const std::vector<pid_t> &pids)
{
    for (pid_t pid : pids) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
}

} // namespace cytosae::testing
