#include "annotation/AuditView.h"

#include "app/ProjectSession.h"

#include <QHeaderView>
#include <QLineEdit>
#include <QTableWidget>
#include <QVBoxLayout>

AuditView::AuditView(QWidget *parent) : QWidget(parent)
{
    setObjectName(QStringLiteral("auditView"));
    m_filter = new QLineEdit(this);
    m_filter->setObjectName(QStringLiteral("auditFilter"));
    m_filter->setPlaceholderText(tr("Filter by person, action or concept"));
    m_filter->setClearButtonEnabled(true);
    m_table = new QTableWidget(0, 5, this);
    m_table->setObjectName(QStringLiteral("auditTable"));
    m_table->setHorizontalHeaderLabels({tr("When (UTC)"), tr("Who"), tr("What"), tr("Concept"), tr("Details")});
    m_table->verticalHeader()->hide();
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->horizontalHeader()->setStretchLastSection(true);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addWidget(m_filter);
    layout->addWidget(m_table);
    connect(m_filter, &QLineEdit::textChanged, this, [this](const QString &text) {
        for (int r = 0; r < m_table->rowCount(); ++r) {
            bool match = text.isEmpty();
            for (int c = 0; c < m_table->columnCount() && !match; ++c)
                match = m_table->item(r, c)->text().contains(text, Qt::CaseInsensitive);
            m_table->setRowHidden(r, !match);
        }
    });
}

void AuditView::setSession(ProjectSession *session)
{
    m_session = session;
    refresh();
}

void AuditView::refresh()
{
    m_table->setRowCount(0);
    if (!m_session)
        return;
    auto trail = m_session->readLedger().auditTrail(2000);
    if (!trail)
        return;
    m_table->setRowCount(int(trail->size()));
    for (int r = 0; r < int(trail->size()); ++r) {
        const auto &e = (*trail)[size_t(r)];
        const std::string cells[] = {e.at, e.who, e.action, e.concept, e.detail};
        for (int c = 0; c < 5; ++c)
            m_table->setItem(r, c, new QTableWidgetItem(QString::fromStdString(cells[c])));
    }
    m_table->resizeColumnsToContents();
    emit m_filter->textChanged(m_filter->text());
}
