#pragma once

// The audit trail of the annotation ledger: who changed what, when (newest first).

#include <QWidget>

class ProjectSession;
class QTableWidget;
class QLineEdit;

class AuditView : public QWidget {
    Q_OBJECT
public:
    explicit AuditView(QWidget *parent = nullptr);
    void setSession(ProjectSession *session);
    void refresh();
    QTableWidget *table() const { return m_table; }

private:
    ProjectSession *m_session = nullptr;
    QTableWidget *m_table;
    QLineEdit *m_filter;
};
