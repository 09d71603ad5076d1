#include "common/CpuShare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#ifdef __linux__
#include <sched.h>
#include <time.h>
#include <unistd.h>
#endif

namespace cytosae {

namespace {

std::vector<int> affinityCpus()
{
    std::vector<int> cpus;
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int i = 0; i < CPU_SETSIZE; ++i)
            if (CPU_ISSET(i, &set))
                cpus.push_back(i);
#endif
    if (cpus.empty())
        for (unsigned i = 0; i < std::max(1u, std::thread::hardware_concurrency()); ++i)
            cpus.push_back(int(i));
    return cpus;
}

// cgroup v2 "cpu.max" ("max 100000" or "150000 100000"): the quota in cores, or 0 for none.
int cgroupQuotaCores()
{
    std::ifstream in("/sys/fs/cgroup/cpu.max");
    std::string quota, period;
    if (!(in >> quota >> period) || quota == "max")
        return 0;
    const double q = std::atof(quota.c_str()), p = std::atof(period.c_str());
    return q > 0 && p > 0 ? std::max(1, int(std::ceil(q / p))) : 0;
}

// "procs_running" of /proc/stat: tasks runnable on the whole machine now; 0 when unknown.
int runnableNow()
{
    std::ifstream in("/proc/stat");
    std::string key;
    long long value = 0;
    while (in >> key) {
        if (key == "procs_running" && (in >> value))
            return int(std::max(0LL, value));
        in.ignore(1 << 16, '\n');
    }
    return 0;
}

// Threads of this process that are runnable now (state R in /proc/self/task/*/stat).
int ownRunnableThreads()
{
    int running = 0;
    std::error_code ec;
    for (const auto &task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(task.path() / "stat");
        std::string line;
        if (!std::getline(in, line))
            continue;
        const size_t close = line.rfind(')'); // the name may hold spaces and parentheses
        if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'R')
            ++running;
    }
    return running;
}

} // namespace

int CpuShare::availableCores()
{
    int n = int(affinityCpus().size());
    if (const int quota = cgroupQuotaCores(); quota > 0)
        n = std::min(n, quota);
    return std::max(1, n);
}

CpuShare::CpuShare(int maxThreads, double windowSeconds)
    : m_max(maxThreads > 0 ? maxThreads : availableCores()), m_window(windowSeconds), m_cpus(affinityCpus())
{
    m_current = m_max;
    m_last = sample();
}

CpuShare::Sample CpuShare::sample() const
{
    Sample s;
    s.at = std::chrono::steady_clock::now();
#ifdef __linux__
    timespec ts{};
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return s;
    s.ownCpu = double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
    std::ifstream in("/proc/stat");
    if (!in)
        return s;
    std::vector<char> mine;
    for (int c : m_cpus) {
        if (c >= int(mine.size()))
            mine.resize(size_t(c) + 1, 0);
        mine[size_t(c)] = 1;
    }
    std::string line;
    bool any = false;
    while (std::getline(in, line)) {
        if (line.compare(0, 3, "cpu") != 0)
            break;
        if (line.size() < 4 || line[3] < '0' || line[3] > '9')
            continue; // the "cpu" total line
        std::istringstream fields(line.substr(3));
        int cpu = -1;
        double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
        fields >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
        if (cpu < 0 || cpu >= int(mine.size()) || !mine[size_t(cpu)])
            continue;
        // Steal is time the hypervisor gave to another machine: a core we did not get.
        s.busyTicks += user + nice + system + irq + softirq + steal;
        any = true;
    }
    s.valid = any;
#endif
    return s;
}

int CpuShare::next()
{
    if (m_max <= 1)
        return 1;
    const Sample now = sample();
    const double wall = std::chrono::duration<double>(now.at - m_last.at).count();
    if (wall < m_window) {
        if (!m_decided) {
            // No history yet: the tasks runnable right now that are not ours.
            m_decided = true;
            const int running = runnableNow();
            if (running > 0) {
                m_others = std::max(0, running - std::max(1, ownRunnableThreads()));
                m_current = std::clamp(int(m_cpus.size()) - int(m_others), 1, m_max);
            }
        }
        return m_current;
    }
    m_decided = true;
    if (now.valid && m_last.valid) {
#ifdef __linux__
        const double hz = double(sysconf(_SC_CLK_TCK));
#else
        const double hz = 100.0;
#endif
        const double busy = (now.busyTicks - m_last.busyTicks) / hz;
        const double own = now.ownCpu - m_last.ownCpu;
        m_others = std::max(0.0, (busy - own) / wall);
        const double free = double(m_cpus.size()) - m_others;
        m_current = std::clamp(int(std::floor(free + 0.5)), 1, m_max);
    }
    m_last = now;
    return m_current;
}

} // namespace cytosae
