#include "imaging/DecoderMessages.h"

#include <iostream>
#include <mutex>
#include <regex>
#include <streambuf>
#include <vector>

namespace cytosae::imaging {

namespace {

thread_local std::string *t_capture = nullptr;

// Installed once into std::cerr: a thread that captures appends to its buffer, every other
// thread writes through to the original stream buffer, as before.
class RoutingBuffer : public std::streambuf {
public:
    explicit RoutingBuffer(std::streambuf *original) : m_original(original) {}

protected:
    int_type overflow(int_type c) override
    {
        if (traits_type::eq_int_type(c, traits_type::eof()))
            return traits_type::not_eof(c);
        if (t_capture) {
            t_capture->push_back(traits_type::to_char_type(c));
            return c;
        }
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_original->sputc(traits_type::to_char_type(c));
    }
    std::streamsize xsputn(const char *s, std::streamsize n) override
    {
        if (t_capture) {
            t_capture->append(s, size_t(n));
            return n;
        }
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_original->sputn(s, n);
    }
    int sync() override
    {
        if (t_capture)
            return 0;
        std::lock_guard<std::mutex> lock(m_mutex);
        return m_original->pubsync();
    }

private:
    std::streambuf *m_original;
    std::mutex m_mutex;
};

void installRouting()
{
    static std::once_flag once;
    std::call_once(once, [] {
        // Lives as long as the process: std::cerr may be used during static destruction.
        static RoutingBuffer *routing = new RoutingBuffer(std::cerr.rdbuf());
        std::cerr.rdbuf(routing);
    });
}

} // namespace

DecoderMessages::DecoderMessages()
{
    installRouting();
    m_previous = t_capture;
    t_capture = &m_text;
}

DecoderMessages::~DecoderMessages()
{
    t_capture = m_previous;
}

std::string DecoderMessages::summary() const
{
    static const std::regex logPrefix(R"(^\[\s*[A-Z]+:[0-9]+@[0-9.]+\]\s*(global\s+\S+\s+\(\d+\)\s+\S+\s+)?)");
    static const std::regex openCvPrefix(R"(OpenCV\([0-9.]+\)\s+\S+:\d+:\s*)");
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < m_text.size()) {
        size_t end = m_text.find('\n', start);
        if (end == std::string::npos)
            end = m_text.size();
        std::string line = m_text.substr(start, end - start);
        start = end + 1;
        line = std::regex_replace(line, logPrefix, "");
        line = std::regex_replace(line, openCvPrefix, "");
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r'))
            line.pop_back();
        if (line.empty())
            continue;
        bool seen = false;
        for (const auto &l : lines)
            seen |= l == line;
        if (!seen)
            lines.push_back(line);
    }
    std::string out;
    for (const auto &l : lines)
        out += (out.empty() ? "" : "; ") + l;
    if (out.size() > 600)
        out = out.substr(0, 600) + "...";
    return out;
}

} // namespace cytosae::imaging
