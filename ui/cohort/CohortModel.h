#pragma once

// Patients of the project: code, diagnosis, accepted cells.

#include "app/ProjectSession.h"

#include <QAbstractTableModel>

class CohortModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Code, Diagnosis, Cells, ColumnCount };
    static constexpr int PatientIdRole = Qt::UserRole + 1;
    static constexpr int SortRole = Qt::UserRole + 2;

    using QAbstractTableModel::QAbstractTableModel;
    void setPatients(QVector<store::PatientRecord> patients);
    int rowOfPatient(qint64 id) const;

    int rowCount(const QModelIndex &parent = {}) const override;
    int columnCount(const QModelIndex &parent = {}) const override;
    QVariant data(const QModelIndex &index, int role) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role) const override;

private:
    QVector<store::PatientRecord> m_patients;
};
