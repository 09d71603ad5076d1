#include "CliArgs.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <locale>
#include <sstream>

namespace cytosae::cli {

bool parseDouble(const std::string &text, double &out)
{
    if (text.empty())
        return false;
    std::istringstream in(text);
    in.imbue(std::locale::classic());
    double v = 0;
    in >> v;
    if (!in || in.peek() != std::char_traits<char>::eof() || !std::isfinite(v))
        return false;
    out = v;
    return true;
}

CliArgs::CliArgs(std::set<std::string> valueOptions, std::set<std::string> flags)
    : m_valueOptions(std::move(valueOptions)), m_flagOptions(std::move(flags))
{
}

bool CliArgs::parse(int argc, char **argv, int first)
{
    bool onlyPositional = false;
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (onlyPositional || a.size() < 2 || a[0] != '-') {
            m_positional.push_back(a);
            continue;
        }
        if (a == "--") {
            onlyPositional = true;
            continue;
        }
        std::string value;
        bool inlineValue = false;
        if (auto eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
            value = a.substr(eq + 1);
            a = a.substr(0, eq);
            inlineValue = true;
        }
        if (m_flagOptions.count(a)) {
            if (inlineValue) {
                m_error = "option " + a + " takes no value";
                return false;
            }
            m_flags.insert(a);
        } else if (m_valueOptions.count(a)) {
            if (!inlineValue) {
                if (i + 1 >= argc) {
                    m_error = "option " + a + " needs a value";
                    return false;
                }
                value = argv[++i];
            }
            m_values[a] = value;
        } else {
            m_error = "unknown option " + a;
            return false;
        }
    }
    return true;
}

std::string CliArgs::value(const std::string &opt, const std::string &fallback) const
{
    auto it = m_values.find(opt);
    return it == m_values.end() ? fallback : it->second;
}

bool CliArgs::intValue(const std::string &opt, int fallback, int min, int max, int &out)
{
    auto it = m_values.find(opt);
    if (it == m_values.end()) {
        out = fallback;
        return true;
    }
    errno = 0;
    char *end = nullptr;
    long v = std::strtol(it->second.c_str(), &end, 10);
    if (errno || end == it->second.c_str() || *end != '\0' || v < min || v > max) {
        m_error = "option " + opt + " needs a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
                  ", got '" + it->second + "'";
        return false;
    }
    out = int(v);
    return true;
}

bool CliArgs::doubleValue(const std::string &opt, double fallback, Bounds bounds, double &out)
{
    auto it = m_values.find(opt);
    if (it == m_values.end()) {
        out = fallback;
        return true;
    }
    double v = 0;
    const bool parsed = parseDouble(it->second, v);
    const bool aboveMin = bounds.minOpen ? v > bounds.min : v >= bounds.min;
    const bool belowMax = bounds.maxOpen ? v < bounds.max : v <= bounds.max;
    if (!parsed || !aboveMin || !belowMax) {
        auto number = [](double x) {
            std::ostringstream s;
            s.imbue(std::locale::classic());
            s << x;
            return s.str();
        };
        std::string need = "option " + opt + " needs a number";
        if (std::isfinite(bounds.min))
            need += (bounds.minOpen ? " > " : " >= ") + number(bounds.min);
        if (std::isfinite(bounds.max))
            need += std::string(std::isfinite(bounds.min) ? " and" : "") + (bounds.maxOpen ? " < " : " <= ") +
                    number(bounds.max);
        m_error = need + ", got '" + it->second + "'";
        return false;
    }
    out = v;
    return true;
}

} // namespace cytosae::cli
