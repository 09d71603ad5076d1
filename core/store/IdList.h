#pragma once

// Lists of ids stored as JSON arrays of integers ("[3,1,2]") in text columns.

#include <charconv>
#include <cstdint>
#include <string>
#include <vector>

namespace cytosae::store {

template <typename T>
std::string formatIdList(const std::vector<T> &ids)
{
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i)
        s += (i ? "," : "") + std::to_string(ids[i]);
    return s + "]";
}

// Integers separated by anything; a damaged entry is skipped, never thrown.
template <typename T = int64_t>
std::vector<T> parseIdList(const std::string &s)
{
    std::vector<T> out;
    const char *p = s.data(), *end = s.data() + s.size();
    while (p < end) {
        T v = 0;
        const auto [next, ec] = std::from_chars(p, end, v);
        if (ec == std::errc() && next != p) {
            out.push_back(v);
            p = next;
        } else {
            ++p;
        }
    }
    return out;
}

} // namespace cytosae::store
