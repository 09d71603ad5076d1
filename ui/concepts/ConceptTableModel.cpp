#include "concepts/ConceptTableModel.h"

#include <QColor>

#include <cmath>

void ConceptTableModel::setRows(QVector<ConceptRow> rows)
{
    beginResetModel();
    m_rows = std::move(rows);
    endResetModel();
}

int ConceptTableModel::rowOfLatent(int latent) const
{
    // Rows come sorted by latent from the database.
    auto it = std::lower_bound(m_rows.begin(), m_rows.end(), latent,
                               [](const ConceptRow &r, int l) { return r.latent < l; });
    return it != m_rows.end() && it->latent == latent ? int(it - m_rows.begin()) : -1;
}

void ConceptTableModel::setLabel(int latent, const QString &label, const QString &status, bool stale)
{
    const int row = rowOfLatent(latent);
    if (row < 0)
        return;
    m_rows[row].label = label;
    m_rows[row].status = status;
    m_rows[row].stale = stale;
    emit dataChanged(index(row, Label), index(row, Status));
}

void ConceptTableModel::setPathognomonic(int latent, bool on)
{
    const int row = rowOfLatent(latent);
    if (row < 0)
        return;
    m_rows[row].pathognomonic = on;
    emit dataChanged(index(row, Flags), index(row, Flags));
}

int ConceptTableModel::rowCount(const QModelIndex &parent) const { return parent.isValid() ? 0 : int(m_rows.size()); }
int ConceptTableModel::columnCount(const QModelIndex &parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant ConceptTableModel::data(const QModelIndex &index, int role) const
{
    if (!index.isValid() || index.row() >= m_rows.size())
        return {};
    const ConceptRow &r = m_rows[index.row()];
    if (role == LatentRole)
        return r.latent;
    if (role == Qt::TextAlignmentRole)
        return index.column() == Label || index.column() == Status || index.column() == Flags
                   ? QVariant(Qt::AlignLeft | Qt::AlignVCenter)
                   : QVariant(Qt::AlignRight | Qt::AlignVCenter);
    if (role == Qt::ToolTipRole && index.column() == Status && r.stale)
        return tr("This label was made with other model files (ViT or SAE). It is shown for reference and is not "
                  "applied: validate or relabel it for the current models.");
    if (role == Qt::ForegroundRole && index.column() == Status && r.stale)
        return QColor(Qt::darkYellow);
    if (role == Qt::ToolTipRole && index.column() == Flags)
        return tr("dead: never fires · dense: fires in more than half of the cells · high mean: mean activation > 0.1 "
                  "(hidden as always-on in the paper's demo)");
    if (role != Qt::DisplayRole && role != SortRole)
        return {};
    const bool sort = role == SortRole;
    switch (index.column()) {
    case Latent: return r.latent;
    case Label:
        if (r.label.isEmpty())
            return sort ? QVariant(QString()) : QVariant(QStringLiteral("—"));
        return r.label;
    case Status:
        if (r.status.isEmpty())
            return sort ? QVariant(QString()) : QVariant(tr("unlabelled"));
        return r.stale ? tr("%1 · stale").arg(r.status) : r.status;
    case Frequency: return sort ? QVariant(r.frequency) : QVariant(QString::number(r.frequency * 100.0, 'f', 1) + " %");
    case MeanActivation:
        if (std::isnan(r.meanActivation))
            return sort ? QVariant(-1.0) : QVariant(QStringLiteral("–"));
        return sort ? QVariant(r.meanActivation) : QVariant(QString::number(r.meanActivation, 'f', 3));
    case Entropy:
        if (r.entropy < 0)
            return sort ? QVariant(-1.0) : QVariant(QStringLiteral("–"));
        return sort ? QVariant(r.entropy) : QVariant(QString::number(r.entropy, 'f', 2));
    case Flags: {
        QStringList f;
        if (r.dead)
            f << tr("dead");
        if (r.dense)
            f << tr("dense");
        if (r.highMean)
            f << tr("high mean");
        if (r.pathognomonic)
            f << tr("pathognomonic");
        return f.join(QStringLiteral(", "));
    }
    }
    return {};
}

QVariant ConceptTableModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractTableModel::headerData(section, orientation, role);
    switch (section) {
    case Latent: return tr("Latent");
    case Label: return tr("Label");
    case Status: return tr("Status");
    case Frequency: return tr("Fires in");
    case MeanActivation: return tr("Mean act.");
    case Entropy: return tr("Entropy");
    case Flags: return tr("Flags");
    }
    return {};
}

ConceptFilterModel::ConceptFilterModel(QObject *parent) : QSortFilterProxyModel(parent)
{
    setSortRole(ConceptTableModel::SortRole);
}

void ConceptFilterModel::setSearch(const QString &text)
{
    m_search = text.trimmed();
    invalidateFilter();
}

void ConceptFilterModel::setHideDead(bool hide)
{
    m_hideDead = hide;
    invalidateFilter();
}

void ConceptFilterModel::setHideDense(bool hide)
{
    m_hideDense = hide;
    invalidateFilter();
}

bool ConceptFilterModel::filterAcceptsRow(int sourceRow, const QModelIndex &) const
{
    auto *model = static_cast<const ConceptTableModel *>(sourceModel());
    const ConceptRow &r = model->rows()[sourceRow];
    if (m_hideDead && r.dead)
        return false;
    if (m_hideDense && (r.dense || r.highMean))
        return false;
    if (m_search.isEmpty())
        return true;
    bool isNumber = false;
    const int n = m_search.toInt(&isNumber);
    if (isNumber)
        return QString::number(r.latent).startsWith(m_search) || r.latent == n;
    return model->data(model->index(sourceRow, ConceptTableModel::Label), Qt::DisplayRole)
               .toString()
               .contains(m_search, Qt::CaseInsensitive) ||
           r.status.contains(m_search, Qt::CaseInsensitive) ||
           model->data(model->index(sourceRow, ConceptTableModel::Flags), Qt::DisplayRole)
               .toString()
               .contains(m_search, Qt::CaseInsensitive);
}
