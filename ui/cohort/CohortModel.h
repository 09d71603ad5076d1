#pragma once

// Patients of the project: code, diagnosis, accepted cells, and cells flagged by pathognomonic
// concepts (with how many still wait for review).

#include "app/ProjectSession.h"

#include <QAbstractTableModel>
#include <QHash>
#include <QPair>

class CohortModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Code, Diagnosis, Cells, Flagged, ColumnCount };
    static constexpr int PatientIdRole = Qt::UserRole + 1;
    static constexpr int SortRole = Qt::UserRole + 2;

    using QAbstractTableModel::QAbstractTableModel;
    void setPatients(QVector<store::PatientRecord> patients);
    int rowOfPatient(qint64 id) const;
    // patient id -> (flagged cells, of those still open); patients not listed have none.
    void setFlagCounts(const QHash<qint64, QPair<qint64, qint64>> &counts);

    int rowCount(const QModelIndex &parent = {}) const override;
    int columnCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role) const override;

private:
    QVector<store::PatientRecord> m_patients;
    QHash<qint64, QPair<qint64, qint64>> m_flags;
};
