#pragma once

// Minimal, strict option parsing for the subcommands: every option must be known, every
// value present and well-formed, or the user gets a message naming the option.

#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace cytosae::cli {

// A finite decimal number, the whole text, read in the C locale ("0.5" whatever the user's).
bool parseDouble(const std::string &text, double &out);

class CliArgs {
public:
    // valueOptions take a value ("--vit FILE"), flags do not ("--json-pretty").
    CliArgs(std::set<std::string> valueOptions, std::set<std::string> flags);
    bool parse(int argc, char **argv, int first); // false: error() says why

    bool has(const std::string &opt) const { return m_values.count(opt) || m_flags.count(opt); }
    std::string value(const std::string &opt, const std::string &fallback = {}) const;
    // Integer option within [min, max]; on a bad value sets error() and returns false.
    bool intValue(const std::string &opt, int fallback, int min, int max, int &out);
    // Decimal option: finite and within the bounds (an open bound excludes its value); on a
    // bad value sets error() and returns false.
    struct Bounds {
        double min = -std::numeric_limits<double>::infinity(), max = std::numeric_limits<double>::infinity();
        bool minOpen = false, maxOpen = false;
    };
    bool doubleValue(const std::string &opt, double fallback, Bounds bounds, double &out);
    const std::vector<std::string> &positional() const { return m_positional; }
    const std::string &error() const { return m_error; }

private:
    std::set<std::string> m_valueOptions, m_flagOptions;
    std::map<std::string, std::string> m_values;
    std::set<std::string> m_flags;
    std::vector<std::string> m_positional;
    std::string m_error;
};

} // namespace cytosae::cli
