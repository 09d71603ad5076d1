#include "Progress.h"

#include <chrono>
#include <memory>
#include <string>
#include <cstdio>
#include <mutex>
#include <unistd.h>

namespace cytosae::cli {

namespace {
std::mutex g_mutex;
bool g_drawn = false;

std::string clock(double s)
{
    if (s < 0)
        return "--:--";
    const long t = long(s + 0.5);
    char buf[32];
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
    return buf;
}
} // namespace

ProgressCallback stderrProgress()
{
    const bool tty = isatty(2);
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    return [tty, last](const ProgressInfo &p) {
        std::lock_guard lock(g_mutex);
        const auto now = std::chrono::steady_clock::now();
        const bool end = p.done >= p.total;
        if (!tty && !end && now - *last < std::chrono::seconds(5))
            return;
        *last = now;
        const double f = p.total > 0 ? double(p.done) / double(p.total) : 1.0;
        const int width = 30, filled = int(f * width + 0.5);
        std::string bar(size_t(filled), '#');
        bar.resize(size_t(width), ' ');
        std::fprintf(stderr, "%s%-10s [%s] %lld/%lld  %.1f/s  ETA %s%s%s%s", tty ? "\r" : "", p.stage.c_str(),
                     bar.c_str(), (long long)p.done, (long long)p.total, p.itemsPerSecond, clock(p.etaSeconds).c_str(),
                     p.detail.empty() ? "" : "  ", p.detail.c_str(), tty ? "\033[K" : "\n");
        g_drawn = tty;
        std::fflush(stderr);
    };
}

void finishProgress()
{
    std::lock_guard lock(g_mutex);
    if (g_drawn)
        std::fputc('\n', stderr);
    g_drawn = false;
}

} // namespace cytosae::cli
