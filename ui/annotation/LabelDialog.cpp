#include "annotation/LabelDialog.h"

#include "annotation/Vocabulary.h"

#include <QComboBox>
#include <QCompleter>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>

LabelDialog::LabelDialog(const QString &conceptTitle, const QString &label, const QString &status, QWidget *parent)
    : QDialog(parent)
{
    setObjectName(QStringLiteral("labelDialog"));
    setWindowTitle(tr("Label %1").arg(conceptTitle));
    m_label = new QComboBox(this);
    m_label->setObjectName(QStringLiteral("labelEdit"));
    m_label->setEditable(true);
    m_label->setInsertPolicy(QComboBox::NoInsert);
    for (const auto &t : cytosae::annotation::morphologyVocabulary())
        m_label->addItem(QString::fromStdString(t.term), QString::fromStdString(t.category));
    m_label->completer()->setCompletionMode(QCompleter::PopupCompletion);
    m_label->completer()->setFilterMode(Qt::MatchContains);
    m_label->completer()->setCaseSensitivity(Qt::CaseInsensitive);
    m_label->setCurrentText(label);
    m_status = new QComboBox(this);
    m_status->setObjectName(QStringLiteral("statusCombo"));
    for (const char *s : {"proposed", "validated", "rejected", "deprecated"})
        m_status->addItem(QString::fromLatin1(s));
    m_status->setCurrentText(status.isEmpty() ? QStringLiteral("proposed") : status);
    m_note = new QLineEdit(this);
    m_note->setObjectName(QStringLiteral("noteEdit"));
    m_note->setPlaceholderText(tr("optional: why, what was looked at"));
    m_vocabularyHint = new QLabel(this);
    m_vocabularyHint->setObjectName(QStringLiteral("vocabularyHint"));
    auto updateHint = [this] {
        const bool term = cytosae::annotation::isVocabularyTerm(m_label->currentText().trimmed().toStdString());
        m_vocabularyHint->setText(term ? tr("Term of the controlled vocabulary")
                                       : tr("Free text (not in the controlled vocabulary)"));
    };
    connect(m_label, &QComboBox::currentTextChanged, this, updateHint);
    updateHint();

    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto okEnabled = [this, buttons] {
        buttons->button(QDialogButtonBox::Ok)->setEnabled(!m_label->currentText().trimmed().isEmpty());
    };
    connect(m_label, &QComboBox::currentTextChanged, this, okEnabled);
    okEnabled();

    auto *form = new QFormLayout(this);
    form->addRow(tr("&Label"), m_label);
    form->addRow(QString(), m_vocabularyHint);
    form->addRow(tr("&Status"), m_status);
    form->addRow(tr("&Note"), m_note);
    form->addRow(buttons);
    resize(460, sizeHint().height());
}

QString LabelDialog::label() const { return m_label->currentText().trimmed(); }
QString LabelDialog::status() const { return m_status->currentText(); }
QString LabelDialog::note() const { return m_note->text().trimmed(); }
