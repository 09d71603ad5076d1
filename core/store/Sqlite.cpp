#include "store/Sqlite.h"

#include <sqlite3.h>

namespace cytosae::store {

namespace {

// SQLite's message, and for a damaged file a sentence that says so: callers stop writing and
// the user learns to run the integrity check rather than retry.
std::string errorText(int code, const std::string &message)
{
    const int primary = code & 0xff;
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB)
        return "the database file is damaged (" + message + ")";
    return "database error: " + message;
}

} // namespace

bool isDamagedMessage(const std::string &message)
{
    return message.find("the database file is damaged") != std::string::npos;
}

Statement::Statement(Statement &&other) noexcept
    : m_db(other.m_db), m_stmt(other.m_stmt), m_lastCode(other.m_lastCode), m_error(std::move(other.m_error))
{
    other.m_stmt = nullptr;
}

Statement &Statement::operator=(Statement &&other) noexcept
{
    if (this != &other) {
        sqlite3_finalize(m_stmt);
        m_db = other.m_db;
        m_stmt = other.m_stmt;
        m_lastCode = other.m_lastCode;
        m_error = std::move(other.m_error);
        other.m_stmt = nullptr;
    }
    return *this;
}

Statement::~Statement() { sqlite3_finalize(m_stmt); }


Statement &Statement::bind(int index, int64_t value)
{
    sqlite3_bind_int64(m_stmt, index, value);
    return *this;
}
Statement &Statement::bind(int index, double value)
{
    sqlite3_bind_double(m_stmt, index, value);
    return *this;
}
Statement &Statement::bind(int index, const std::string &value)
{
    sqlite3_bind_text(m_stmt, index, value.data(), int(value.size()), SQLITE_TRANSIENT);
    return *this;
}
Statement &Statement::bindBlob(int index, const void *data, size_t size)
{
    sqlite3_bind_blob64(m_stmt, index, data, sqlite3_uint64(size), SQLITE_TRANSIENT);
    return *this;
}
Statement &Statement::bindNull(int index)
{
    sqlite3_bind_null(m_stmt, index);
    return *this;
}

Statement &Statement::bindColumn(int index, const Statement &from, int col)
{
    sqlite3_bind_value(m_stmt, index, sqlite3_column_value(from.m_stmt, col));
    return *this;
}

bool Statement::step()
{
    m_lastCode = sqlite3_step(m_stmt);
    if (m_lastCode == SQLITE_ROW)
        return true;
    if (m_lastCode != SQLITE_DONE)
        m_error = sqlite3_errmsg(m_db);
    return false;
}

Status Statement::exec()
{
    while (step()) {
    }
    Status st = status();
    sqlite3_reset(m_stmt);
    return st;
}

void Statement::reset()
{
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
    m_lastCode = 0;
    m_error.clear();
}

Status Statement::status() const
{
    if (m_lastCode == SQLITE_ROW || m_lastCode == SQLITE_DONE || m_lastCode == 0)
        return Status::success();
    return Error(errorText(m_lastCode, m_error));
}

int64_t Statement::columnInt(int col) const { return sqlite3_column_int64(m_stmt, col); }
double Statement::columnDouble(int col) const { return sqlite3_column_double(m_stmt, col); }
std::string Statement::columnText(int col) const
{
    const unsigned char *t = sqlite3_column_text(m_stmt, col);
    return t ? std::string(reinterpret_cast<const char *>(t), size_t(sqlite3_column_bytes(m_stmt, col))) : std::string();
}
std::vector<uint8_t> Statement::columnBlob(int col) const
{
    size_t n = 0;
    const auto *p = static_cast<const uint8_t *>(columnBlobData(col, n));
    return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>();
}
const void *Statement::columnBlobData(int col, size_t &size) const
{
    const void *p = sqlite3_column_blob(m_stmt, col);
    size = size_t(sqlite3_column_bytes(m_stmt, col));
    return p;
}
int Statement::columnCount() const { return sqlite3_column_count(m_stmt); }
std::string Statement::columnName(int col) const
{
    const char *n = sqlite3_column_name(m_stmt, col);
    return n ? n : "";
}
bool Statement::columnIsNull(int col) const { return sqlite3_column_type(m_stmt, col) == SQLITE_NULL; }

Statement::Type Statement::columnType(int col) const
{
    switch (sqlite3_column_type(m_stmt, col)) {
    case SQLITE_INTEGER: return Type::Integer;
    case SQLITE_FLOAT: return Type::Real;
    case SQLITE_TEXT: return Type::Text;
    case SQLITE_BLOB: return Type::Blob;
    default: return Type::Null;
    }
}

// ---------------------------------------------------------------------------------------

Database::~Database()
{
    if (m_db)
        sqlite3_close_v2(m_db);
}

Database::Database(Database &&other) noexcept : m_db(other.m_db) { other.m_db = nullptr; }

Database &Database::operator=(Database &&other) noexcept
{
    if (this != &other) {
        if (m_db)
            sqlite3_close_v2(m_db);
        m_db = other.m_db;
        other.m_db = nullptr;
    }
    return *this;
}

Result<Database> Database::open(const std::string &path, Mode mode)
{
    int flags = SQLITE_OPEN_NOMUTEX;
    switch (mode) {
    case Mode::ReadWriteCreate: flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE; break;
    case Mode::ReadWrite: flags |= SQLITE_OPEN_READWRITE; break;
    case Mode::ReadOnly: flags |= SQLITE_OPEN_READONLY; break;
    }
    sqlite3 *db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    if (rc != SQLITE_OK) {
        std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        if (db)
            sqlite3_close_v2(db);
        return Error("cannot open database: " + msg);
    }
    sqlite3_busy_timeout(db, 10000);
    sqlite3_extended_result_codes(db, 1);
    Database d;
    d.m_db = db;
    return d;
}

Status Database::exec(const std::string &sql)
{
    char *err = nullptr;
    if (sqlite3_exec(m_db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : sqlite3_errmsg(m_db);
        sqlite3_free(err);
        return Error(errorText(sqlite3_extended_errcode(m_db), msg));
    }
    return Status::success();
}

Result<Statement> Database::prepare(const std::string &sql)
{
    sqlite3_stmt *stmt = nullptr;
    if (const int rc = sqlite3_prepare_v2(m_db, sql.c_str(), int(sql.size()), &stmt, nullptr); rc != SQLITE_OK)
        return Error(errorText(rc, sqlite3_errmsg(m_db)));
    return Statement(m_db, stmt);
}

int64_t Database::lastInsertId() const { return sqlite3_last_insert_rowid(m_db); }
int Database::changes() const { return sqlite3_changes(m_db); }

Result<Statement> Database::firstRow(const std::string &sql)
{
    auto st = prepare(sql);
    if (!st)
        return st.error();
    if (!st->step()) {
        if (Status s = st->status(); !s)
            return s.error();
        return Error("query returned no row: " + sql);
    }
    return st;
}

Result<int64_t> Database::queryInt(const std::string &sql)
{
    auto st = firstRow(sql);
    if (!st)
        return st.error();
    return st->columnInt(0);
}

Result<std::string> Database::queryText(const std::string &sql)
{
    auto st = firstRow(sql);
    if (!st)
        return st.error();
    return st->columnText(0);
}

void Database::rollback()
{
    if (m_db && !sqlite3_get_autocommit(m_db))
        sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
}

Status copyDatabase(Database &from, Database &to)
{
    sqlite3_backup *backup = sqlite3_backup_init(to.handle(), "main", from.handle(), "main");
    if (!backup)
        return Error(errorText(sqlite3_extended_errcode(to.handle()), sqlite3_errmsg(to.handle())));
    const int stepped = sqlite3_backup_step(backup, -1);
    const int finished = sqlite3_backup_finish(backup);
    if (stepped != SQLITE_DONE)
        return Error(errorText(stepped, sqlite3_errstr(stepped)));
    if (finished != SQLITE_OK)
        return Error(errorText(finished, sqlite3_errmsg(to.handle())));
    return Status::success();
}

} // namespace cytosae::store
