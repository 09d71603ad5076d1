#include "settings/SettingsDialog.h"

#include "model/Engine.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLineEdit>
#include <QSettings>
#include <QSpinBox>
#include <QThread>

AppSettings AppSettings::load()
{
    QSettings s;
    AppSettings a;
    a.annotator = s.value(QStringLiteral("settings/annotator"), qEnvironmentVariable("USER")).toString();
    a.device = s.value(QStringLiteral("settings/device"), a.device).toString();
    if (a.device != QLatin1String("cpu") && a.device != QLatin1String("cuda"))
        a.device = QStringLiteral("auto");
    a.precision = s.value(QStringLiteral("settings/precision"), a.precision).toString();
    if (a.precision != QLatin1String("fp32") && a.precision != QLatin1String("bf16"))
        a.precision = QStringLiteral("auto");
    a.batchSize = qBound(1, s.value(QStringLiteral("settings/batchSize"), a.batchSize).toInt(), 256);
    a.threads = qBound(0, s.value(QStringLiteral("settings/threads"), a.threads).toInt(), 1024);
    a.galleryOverlays = s.value(QStringLiteral("settings/galleryOverlays"), a.galleryOverlays).toBool();
    return a;
}

void AppSettings::save() const
{
    QSettings s;
    s.setValue(QStringLiteral("settings/annotator"), annotator);
    s.setValue(QStringLiteral("settings/device"), device);
    s.setValue(QStringLiteral("settings/precision"), precision);
    s.setValue(QStringLiteral("settings/batchSize"), batchSize);
    s.setValue(QStringLiteral("settings/threads"), threads);
    s.setValue(QStringLiteral("settings/galleryOverlays"), galleryOverlays);
}

SettingsDialog::SettingsDialog(const AppSettings &current, QWidget *parent) : QDialog(parent)
{
    setObjectName(QStringLiteral("settingsDialog"));
    setWindowTitle(tr("Settings"));
    m_annotator = new QLineEdit(current.annotator, this);
    m_annotator->setObjectName(QStringLiteral("annotatorEdit"));
    m_annotator->setToolTip(tr("Recorded with the concept labels and reviews you make"));
    m_device = new QComboBox(this);
    m_device->setObjectName(QStringLiteral("deviceCombo"));
    m_device->addItem(tr("Automatic (CUDA when available)"), QStringLiteral("auto"));
    m_device->addItem(tr("CPU"), QStringLiteral("cpu"));
    m_device->addItem(tr("CUDA GPU"), QStringLiteral("cuda"));
    m_device->setCurrentIndex(qMax(0, m_device->findData(current.device)));
    // Which LibTorch this is, so "CUDA GPU" on a CPU-only build is not a surprise.
    m_device->setToolTip(tr("This build: %1. When CUDA fails during a run, the run continues on the CPU and says so.")
                             .arg(QString::fromStdString(cytosae::model::runtimeSummary())));
    m_precision = new QComboBox(this);
    m_precision->setObjectName(QStringLiteral("precisionCombo"));
    m_precision->addItem(tr("Automatic (bf16 where it agrees with fp32)"), QStringLiteral("auto"));
    m_precision->addItem(tr("fp32 (reference)"), QStringLiteral("fp32"));
    m_precision->addItem(tr("bf16 (fast)"), QStringLiteral("bf16"));
    m_precision->setCurrentIndex(qMax(0, m_precision->findData(current.precision)));
    m_precision->setToolTip(tr("bf16 is about 3x faster on CPUs with avx512_bf16 or AMX (this CPU: %1) and on CUDA. "
                               "Automatic runs the first batch both ways and keeps bf16 only if its top-32 concepts "
                               "per patch agree with fp32 at least 99 %% of the time and image-level means within 1 %%. "
                               "Each run records its precision.")
                                .arg(cytosae::model::cpuHasFastBf16() ? tr("yes") : tr("no")));
    m_batch = new QSpinBox(this);
    m_batch->setObjectName(QStringLiteral("batchSpin"));
    m_batch->setRange(1, 256);
    m_batch->setValue(current.batchSize);
    m_threads = new QSpinBox(this);
    m_threads->setObjectName(QStringLiteral("threadsSpin"));
    m_threads->setRange(0, 1024);
    m_threads->setSpecialValueText(tr("up to %1 cores, fewer while other programs compute").arg(QThread::idealThreadCount()));
    m_threads->setValue(current.threads);
    m_overlays = new QCheckBox(tr("Show concept overlays on gallery thumbnails"), this);
    m_overlays->setObjectName(QStringLiteral("galleryOverlaysCheck"));
    m_overlays->setChecked(current.galleryOverlays);
    auto *buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto *form = new QFormLayout(this);
    form->addRow(tr("Annotator"), m_annotator);
    form->addRow(tr("Run models on"), m_device);
    form->addRow(tr("Precision"), m_precision);
    form->addRow(tr("Images per batch"), m_batch);
    form->addRow(tr("CPU threads"), m_threads);
    form->addRow(QString(), m_overlays);
    form->addRow(buttons);
}

AppSettings SettingsDialog::settings() const
{
    AppSettings a;
    a.annotator = m_annotator->text().trimmed();
    a.device = m_device->currentData().toString();
    a.precision = m_precision->currentData().toString();
    a.batchSize = m_batch->value();
    a.threads = m_threads->value();
    a.galleryOverlays = m_overlays->isChecked();
    return a;
}
