#pragma once

// Damage a project file the way a failing disk would, for the tests of damaged projects
// (tst_store, tst_cli, tst_mainwindow).

#include "store/Sqlite.h"

#include <QByteArray>
#include <QFile>
#include <QString>

// The whole file, or empty when it cannot be read.
inline QByteArray fileBytes(const QString &path)
{
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

// Overwrites the root page of `table` in a closed SQLite file (its WAL merged) with `fill`
// bytes. Returns what went wrong, or an empty string.
inline QString overwriteRootPage(const QString &path, const char *table, char fill)
{
    using cytosae::store::Database;
    int64_t root = 0, pageSize = 0;
    {
        auto db = Database::open(path.toStdString(), Database::Mode::ReadOnly);
        if (!db)
            return QString::fromStdString(db.message());
        auto r = db->queryInt(std::string("SELECT rootpage FROM sqlite_master WHERE name = '") + table + "'");
        auto s = db->queryInt("PRAGMA page_size");
        if (!r || !s)
            return QString::fromStdString(!r ? r.message() : s.message());
        root = *r;
        pageSize = *s;
    }
    QFile f(path);
    if (!f.open(QIODevice::ReadWrite) || !f.seek((root - 1) * pageSize) ||
        f.write(QByteArray(int(pageSize), fill)) != pageSize)
        return path + ": cannot overwrite page " + QString::number(root);
    return {};
}
