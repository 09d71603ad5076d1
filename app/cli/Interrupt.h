#pragma once

// Ctrl-C (or SIGTERM) asks long commands to stop at the next safe point (between batches,
// steps); the work saves what it has and the command can be run again to resume. A second
// Ctrl-C kills the process at once (the default action is restored by the first).

#include <atomic>
#include <csignal>

namespace cytosae::cli {

inline std::atomic<bool> &interruptFlag()
{
    static std::atomic<bool> flag{false};
    return flag;
}

class InterruptGuard {
public:
    InterruptGuard()
    {
        interruptFlag() = false;
        std::signal(SIGINT, onSignal);
        std::signal(SIGTERM, onSignal);
    }
    ~InterruptGuard()
    {
        std::signal(SIGINT, SIG_DFL);
        std::signal(SIGTERM, SIG_DFL);
    }
    InterruptGuard(const InterruptGuard &) = delete;
    InterruptGuard &operator=(const InterruptGuard &) = delete;

private:
    static void onSignal(int sig)
    {
        interruptFlag() = true;
        std::signal(sig, SIG_DFL);
    }
};

} // namespace cytosae::cli
