#pragma once

// Every latent of the current run with its statistics, for the concept browser's table.
// Sorting and filtering happen in ConceptFilterModel on top of it (SortRole gives numbers).

#include "app/ProjectSession.h"

#include <QAbstractTableModel>
#include <QSortFilterProxyModel>

class ConceptTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Latent, Label, Status, Frequency, MeanActivation, Entropy, Flags, ColumnCount };
    static constexpr int SortRole = Qt::UserRole + 1;
    static constexpr int LatentRole = Qt::UserRole + 2;

    using QAbstractTableModel::QAbstractTableModel;
    void setRows(QVector<ConceptRow> rows);
    const QVector<ConceptRow> &rows() const { return m_rows; }
    int rowOfLatent(int latent) const;
    // After a ledger change: one row's label columns.
    void setLabel(int latent, const QString &label, const QString &status, bool stale);
    void setPathognomonic(int latent, bool on);

    int rowCount(const QModelIndex &parent = {}) const override;
    int columnCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role) const override;

private:
    QVector<ConceptRow> m_rows;
};

class ConceptFilterModel : public QSortFilterProxyModel {
    Q_OBJECT
public:
    explicit ConceptFilterModel(QObject *parent = nullptr);
    void setSearch(const QString &text);
    void setHideDead(bool hide);
    void setHideDense(bool hide);

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex &sourceParent) const override;

private:
    QString m_search;
    bool m_hideDead = true;
    bool m_hideDense = false;
};
