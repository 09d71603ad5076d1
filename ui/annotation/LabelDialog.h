#pragma once

// Name a concept: a label from the controlled hematology vocabulary (completion as you type)
// or free text, a status, and a note. The strongest cells shown in the concept browser are
// recorded as the evidence.

#include <QDialog>

class QComboBox;
class QLineEdit;
class QLabel;

class LabelDialog : public QDialog {
    Q_OBJECT
public:
    LabelDialog(const QString &conceptTitle, const QString &label, const QString &status, QWidget *parent = nullptr);
    QString label() const;
    QString status() const;
    QString note() const;

private:
    QComboBox *m_label, *m_status;
    QLineEdit *m_note;
    QLabel *m_vocabularyHint;
};
