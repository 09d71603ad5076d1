#pragma once

// Preferences (Edit ▸ Settings…, Ctrl+,): who the user is (stored with labels and reviews
// later), how runs use the machine, and gallery defaults. Stored in QSettings.

#include <QDialog>

class QCheckBox;
class QComboBox;
class QLineEdit;
class QSpinBox;

struct AppSettings {
    QString annotator;
    QString device = QStringLiteral("auto");    // auto | cpu | cuda
    QString precision = QStringLiteral("auto"); // auto | fp32 | bf16
    int batchSize = 8;
    int threads = 0; // 0: as many cores as are free (fewer while other processes compute)
    bool galleryOverlays = true;

    static AppSettings load();
    void save() const;
};

class SettingsDialog : public QDialog {
    Q_OBJECT
public:
    explicit SettingsDialog(const AppSettings &current, QWidget *parent = nullptr);
    AppSettings settings() const;

private:
    QLineEdit *m_annotator;
    QComboBox *m_device, *m_precision;
    QSpinBox *m_batch, *m_threads;
    QCheckBox *m_overlays;
};
