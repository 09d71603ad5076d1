#include "cohort/CohortModel.h"

void CohortModel::setPatients(QVector<store::PatientRecord> patients)
{
    beginResetModel();
    m_patients = std::move(patients);
    endResetModel();
}

void CohortModel::setFlagCounts(const QHash<qint64, QPair<qint64, qint64>> &counts)
{
    m_flags = counts;
    if (!m_patients.isEmpty())
        emit dataChanged(index(0, Flagged), index(int(m_patients.size()) - 1, Flagged));
}

int CohortModel::rowOfPatient(qint64 id) const
{
    for (int i = 0; i < m_patients.size(); ++i)
        if (m_patients[i].id == id)
            return i;
    return -1;
}

int CohortModel::rowCount(const QModelIndex &parent) const { return parent.isValid() ? 0 : int(m_patients.size()); }
int CohortModel::columnCount(const QModelIndex &parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant CohortModel::data(const QModelIndex &index, int role) const
{
    if (!index.isValid() || index.row() >= m_patients.size())
        return {};
    const auto &p = m_patients[index.row()];
    if (role == PatientIdRole)
        return QVariant::fromValue<qint64>(p.id);
    if (role == Qt::ToolTipRole && index.column() == Flagged)
        return tr("Cells at or above a pathognomonic flag's threshold; in brackets those still waiting for a "
                  "decision in the Review tab");
    if (role == Qt::TextAlignmentRole && (index.column() == Cells || index.column() == Flagged))
        return QVariant(Qt::AlignRight | Qt::AlignVCenter);
    if (role != Qt::DisplayRole && role != SortRole)
        return {};
    switch (index.column()) {
    case Code: return QString::fromStdString(p.code);
    case Diagnosis: return p.diagnosis.empty() ? (role == SortRole ? QString() : tr("–")) : QString::fromStdString(p.diagnosis);
    case Cells: return QVariant::fromValue<qint64>(p.cells);
    case Flagged: {
        const auto f = m_flags.value(p.id, {0, 0});
        if (role == SortRole)
            return QVariant::fromValue<qint64>(f.second * 1000000 + f.first); // open ones first
        if (f.first == 0)
            return QString();
        return f.second ? tr("%1 (%2 open)").arg(f.first).arg(f.second) : QString::number(f.first);
    }
    }
    return {};
}

QVariant CohortModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
    case Code: return tr("Patient");
    case Diagnosis: return tr("Diagnosis");
    case Cells: return tr("Cells");
    case Flagged: return tr("Flagged");
    }
    return {};
}
