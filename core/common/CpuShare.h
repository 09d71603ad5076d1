#pragma once

// How many threads compute work should use now, on a machine it shares with others.
//
// LibTorch's OpenMP threads synchronise at the end of every operator. When another process
// holds one of the cores, a thread that is descheduled makes all the others wait, and a run
// with as many threads as cores becomes many times slower than a run with fewer (measured:
// 60 demo cells in 1.3 s idle, 35 s beside two busy processes with 2 threads, 1.7 s with 1).
// CpuShare measures what other processes used of this process's cores since the last
// decision (per-core busy time from /proc/stat minus this process's own CPU time, over at
// least `window` seconds) and answers the cores left for us: all of them on an idle machine,
// fewer when others compute. The first decision, before there is a window of history, counts
// the processes runnable at that moment. Linux only; elsewhere it always answers the maximum.
//
// Thread safety: one CpuShare per engine, used from one thread at a time.

#include <chrono>
#include <cstdint>
#include <vector>

namespace cytosae {

class CpuShare {
public:
    // maxThreads 0: the cores this process may run on (affinity mask, cgroup CPU quota).
    explicit CpuShare(int maxThreads = 0, double windowSeconds = 0.25);

    // Cores this process may run on (affinity mask and cgroup quota), at least 1.
    static int availableCores();

    int maxThreads() const { return m_max; }
    // Threads for the next piece of work. Re-decides once `window` seconds have passed since the
    // last decision; in between it answers the last decision.
    int next();
    // Cores' worth of CPU that other processes used on our cores over the last window.
    double othersLoad() const { return m_others; }

private:
    struct Sample {
        bool valid = false;
        double busyTicks = 0; // summed over our cores
        double ownCpu = 0;    // seconds of CPU time of this process
        std::chrono::steady_clock::time_point at;
    };
    Sample sample() const;

    int m_max = 1;
    int m_current = 1;
    bool m_decided = false;
    double m_window = 0.25;
    double m_others = 0;
    std::vector<int> m_cpus; // cores in the affinity mask
    Sample m_last;
};

} // namespace cytosae
