#pragma once

// A thin RAII layer over the sqlite3 C API: errors become Result/Status values carrying
// SQLite's message, never exceptions. One Database per thread (SQLite is opened in
// multi-thread mode: a connection must not be shared between threads).

#include "common/Result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace cytosae::store {

// True for the message of an error caused by a damaged database file (SQLITE_CORRUPT or
// SQLITE_NOTADB), which starts "the database file is damaged".
bool isDamagedMessage(const std::string &message);

class Statement {
public:
    Statement() = default;
    Statement(Statement &&other) noexcept;
    Statement &operator=(Statement &&other) noexcept;
    Statement(const Statement &) = delete;
    Statement &operator=(const Statement &) = delete;
    ~Statement();

    // Binding is 1-based as in SQLite. Returns *this for chaining.
    Statement &bind(int index, int64_t value);
    Statement &bind(int index, int value) { return bind(index, int64_t(value)); }
    Statement &bind(int index, long long value) { return bind(index, int64_t(value)); }
    Statement &bind(int index, double value);
    Statement &bind(int index, const std::string &value);
    Statement &bindBlob(int index, const void *data, size_t size);
    Statement &bindNull(int index);
    // Binds column `col` of the current row of `from` as it is (any type): copies rows
    // between databases without knowing their columns.
    Statement &bindColumn(int index, const Statement &from, int col);

    // Advances: true while a row is available; false at the end or on error (see status()).
    bool step();
    // Runs to completion (for statements without rows).
    Status exec();
    void reset();
    Status status() const;

    int64_t columnInt(int col) const;
    double columnDouble(int col) const;
    std::string columnText(int col) const;
    std::vector<uint8_t> columnBlob(int col) const;
    const void *columnBlobData(int col, size_t &size) const;
    bool columnIsNull(int col) const;
    enum class Type { Integer, Real, Text, Blob, Null };
    Type columnType(int col) const;
    int columnCount() const;
    std::string columnName(int col) const;

private:
    friend class Database;
    Statement(sqlite3 *db, sqlite3_stmt *stmt) : m_db(db), m_stmt(stmt) {}
    sqlite3 *m_db = nullptr;
    sqlite3_stmt *m_stmt = nullptr;
    int m_lastCode = 0;
    std::string m_error;
};

class Database {
public:
    Database() = default;
    ~Database();
    Database(Database &&other) noexcept;
    Database &operator=(Database &&other) noexcept;
    Database(const Database &) = delete;
    Database &operator=(const Database &) = delete;

    enum class Mode { ReadWriteCreate, ReadWrite, ReadOnly };
    static Result<Database> open(const std::string &path, Mode mode);

    Status exec(const std::string &sql);
    Result<Statement> prepare(const std::string &sql);
    int64_t lastInsertId() const;
    int changes() const;
    // Integer result of a single-value query (e.g. PRAGMA user_version).
    Result<int64_t> queryInt(const std::string &sql);
    Result<std::string> queryText(const std::string &sql);

    Status begin() { return exec("BEGIN IMMEDIATE"); }
    Status commit() { return exec("COMMIT"); }
    void rollback();

    sqlite3 *handle() const { return m_db; }

private:
    // The statement stepped onto its first row, or an error when there is none.
    Result<Statement> firstRow(const std::string &sql);

    sqlite3 *m_db = nullptr;
};

// Copies every page of `from` into `to` (SQLite's online backup API): a consistent snapshot
// that includes what is still in `from`'s write-ahead log.
Status copyDatabase(Database &from, Database &to);

} // namespace cytosae::store
