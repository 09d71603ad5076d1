#pragma once

// Result<T>: the value of an operation or a message a person can read.
// Core never lets exceptions cross its API; every fallible call returns one of these.

#include <optional>
#include <string>
#include <utility>

namespace cytosae {

class Error {
public:
    Error() = default;
    explicit Error(std::string message) : m_message(std::move(message)) {}
    const std::string &message() const { return m_message; }

    // Prefixes context ("file.pth: ") so a message names what it is about.
    Error withContext(const std::string &context) const { return Error(context + ": " + m_message); }

private:
    std::string m_message;
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_value(std::move(value)) {}
    Result(Error error) : m_error(std::move(error)) {}

    bool ok() const { return m_value.has_value(); }
    explicit operator bool() const { return ok(); }

    T &value() & { return *m_value; }
    const T &value() const & { return *m_value; }
    T &&value() && { return std::move(*m_value); }
    T *operator->() { return &*m_value; }
    const T *operator->() const { return &*m_value; }
    T &operator*() { return *m_value; }
    const T &operator*() const { return *m_value; }

    const Error &error() const { return m_error; }
    const std::string &message() const { return m_error.message(); }

private:
    std::optional<T> m_value;
    Error m_error;
};

// For operations that return nothing but may fail.
class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : m_failed(true), m_error(std::move(error)) {}
    static Status success() { return Status(); }

    bool ok() const { return !m_failed; }
    explicit operator bool() const { return ok(); }
    const Error &error() const { return m_error; }
    const std::string &message() const { return m_error.message(); }

private:
    bool m_failed = false;
    Error m_error;
};

} // namespace cytosae
