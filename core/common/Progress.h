#pragma once

// Progress of long work (imports, runs, statistics), reported through a callback that the
// command line draws as a bar and the GUI forwards as a queued signal. Callbacks run on a
// thread of the work (a run reports from its writer thread), never on the caller's GUI
// thread; they must be cheap, thread-safe and must not call back into the work.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace cytosae {

struct ProgressInfo {
    std::string stage;        // "import", "run", "statistics"
    int64_t done = 0;
    int64_t total = 0;
    double itemsPerSecond = 0;
    double etaSeconds = -1;   // -1: unknown
    std::string detail;       // e.g. "on cuda:0" for a run; may be empty
};

using ProgressCallback = std::function<void(const ProgressInfo &)>;

// Turns done/total counts into rates and ETAs (rate over the whole stage so far).
class ProgressMeter {
public:
    ProgressMeter(std::string stage, int64_t total, ProgressCallback callback)
        : m_callback(std::move(callback)), m_start(std::chrono::steady_clock::now())
    {
        m_info.stage = std::move(stage);
        m_info.total = total;
    }

    // Thread-safe: a run reports from its writer thread while setDetail may come from another.
    void report(int64_t done)
    {
        std::lock_guard lock(m_mutex);
        m_info.done = done;
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
        m_info.itemsPerSecond = s > 0 ? double(done - m_first) / s : 0;
        m_info.etaSeconds = m_info.itemsPerSecond > 0 ? double(m_info.total - done) / m_info.itemsPerSecond : -1;
        if (m_callback)
            m_callback(m_info);
    }
    void setDetail(std::string detail)
    {
        std::lock_guard lock(m_mutex);
        m_info.detail = std::move(detail);
    }
    // Counts done before this meter started (e.g. a resumed run) do not inflate the rate.
    void setAlreadyDone(int64_t done) { m_first = done; }
    const ProgressInfo &info() const { return m_info; }

private:
    ProgressCallback m_callback;
    std::chrono::steady_clock::time_point m_start;
    ProgressInfo m_info;
    int64_t m_first = 0;
    std::mutex m_mutex;
};

} // namespace cytosae
