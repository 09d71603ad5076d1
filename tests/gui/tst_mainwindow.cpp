// The real main window on a small generated project (synthetic demo cells run through the
// tiny fixture models): linked selection across views, the overlay in the cell viewer,
// viewer controls, a run in the background that keeps the GUI responsive and can be
// cancelled, and every item model through QAbstractItemModelTester.

#include <QProcess>
#include <ctime>

#include "DemoProject.h"
#include "../common/DamagedFiles.h"
#include "common/CpuShare.h"
#include "app/MainWindow.h"
#include "app/SelectionModel.h"
#include "cohort/CohortModel.h"
#include "concepts/ConceptBrowser.h"
#include "concepts/ConceptTableModel.h"
#include "gallery/GalleryModel.h"
#include "tasks/BackgroundTask.h"
#include "viewer/CellView.h"
#include "viewer/CellViewerPanel.h"
#include "settings/SettingsDialog.h"

#include <QCheckBox>

#include "demo/DemoCohort.h"
#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/ProjectDb.h"

#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QTableWidget>
#include <QElapsedTimer>
#include <QSettings>
#include <QSlider>
#include <QTableView>
#include <QTemporaryDir>
#include <QTimer>
#include <QRegularExpression>
#include <QtTest>

namespace {
const QString kVit = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/") + "tiny_dinobloom.pth";
const QString kSae = QStringLiteral(CYTOSAE_TEST_DATA "/fixtures/") + "final_sparse_autoencoder_dinov2_vitb14_-2_resid_256.pt";
} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear();
        m_project = makeDemoProject(m_dir.filePath("a"), 1, 12, true);
        m_bigProject = makeDemoProject(m_dir.filePath("b"), 2, 40, false);
    }

    void opensProjectAndFillsViews()
    {
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(m_project));
        QCOMPARE(w.cohortModel()->rowCount(), 5);
        QTRY_VERIFY(w.conceptBrowser()->tableModel()->rowCount() == 256);
        QAbstractItemModelTester t1(w.cohortModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        QAbstractItemModelTester t2(w.conceptBrowser()->tableModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        QAbstractItemModelTester t3(w.conceptBrowser()->filterModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        QAbstractItemModelTester t4(w.galleryModel(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        // Filtering the concept table: a latent id search narrows it.
        auto *search = w.findChild<QLineEdit *>("conceptSearch");
        QVERIFY(search);
        QTest::keyClicks(search, "123");
        QTRY_VERIFY(w.conceptBrowser()->filterModel()->rowCount() >= 1);
        QVERIFY(w.conceptBrowser()->filterModel()->rowCount() < 5);
        QVERIFY(!w.openProject(m_dir.filePath("missing.cyto")));
        QVERIFY(w.lastMessage().contains("not found"));
    }

    // One statistic everywhere: the Patient dock lists what `cytosae analyze patient-specific`
    // writes for the same patient, row for row (latent, fraction, cohort median, score).
    void patientDockShowsWhatAnalyzeWrites()
    {
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(m_project));
        const auto patients = w.session()->patients();
        QVERIFY(patients.size() >= 2);
        const auto &patient = patients[1];
        auto *table = w.findChild<QTableWidget *>("patientConcepts");
        QVERIFY(table);
        w.selection()->setPatient(patient.id);
        QTRY_VERIFY_WITH_TIMEOUT(table->rowCount() > 0, 60000);

        QTemporaryDir out;
        QProcess cli;
        cli.start(QStringLiteral(CYTOSAE_BINARY_DIR "/app/cli/cytosae"),
                  {"analyze", m_project, "patient-specific", QString::fromStdString(patient.code), "--top", "50",
                   "--cells", "0", "--out", out.path()});
        QVERIFY(cli.waitForFinished(600000));
        QVERIFY2(cli.exitCode() == 0, cli.readAllStandardError().constData());
        QFile csv(out.filePath("patient_specific.csv"));
        QVERIFY(csv.open(QIODevice::ReadOnly));
        const QList<QByteArray> header = csv.readLine().trimmed().split(',');
        const int latentCol = int(header.indexOf("latent")), fractionCol = int(header.indexOf("fraction")),
                  medianCol = int(header.indexOf("reference_median")), scoreCol = int(header.indexOf("score"));
        QVERIFY(latentCol >= 0 && fractionCol >= 0 && medianCol >= 0 && scoreCol >= 0);
        int row = 0;
        while (!csv.atEnd()) {
            const QList<QByteArray> f = csv.readLine().trimmed().split(',');
            if (f.size() < header.size())
                continue;
            QVERIFY2(row < table->rowCount(), "the dock lists fewer concepts than analyze");
            QCOMPARE(table->item(row, 0)->text(), QString(f[latentCol]));
            QCOMPARE(table->item(row, 1)->text(), QString::number(f[fractionCol].toDouble() * 100, 'f', 1) + " %");
            QCOMPARE(table->item(row, 2)->text(), QString::number(f[medianCol].toDouble() * 100, 'f', 1) + " %");
            QCOMPARE(table->item(row, 3)->text(), QString::number(f[scoreCol].toDouble(), 'f', 2));
            ++row;
        }
        QVERIFY2(row >= 5, "analyze wrote too few concepts to compare");
    }

    // A project damaged in the middle of a large table opens at once for reading; the
    // background check finds the damage, the window says so, and nothing is written to it.
    void damagedProjectIsShownButNeverWritten()
    {
        const QString copy = m_dir.filePath("damaged.cyto");
        QFile::remove(copy);
        QVERIFY(QFile::copy(m_project, copy));
        const QString overwritten = overwriteRootPage(copy, "image_concept", '\x5a');
        QVERIFY2(overwritten.isEmpty(), qPrintable(overwritten));
        const QByteArray before = fileBytes(copy);
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(copy));
        QTRY_VERIFY_WITH_TIMEOUT(w.session()->integrity() == ProjectSession::Integrity::Damaged, 60000);
        QVERIFY2(w.lastMessage().contains("damaged") && w.lastMessage().contains("cytosae check"),
                 qPrintable(w.lastMessage()));
        QString error;
        QVERIFY(w.session()->ledgerFor("dr.test", &error) == nullptr);
        QVERIFY2(error.contains("damaged"), qPrintable(error));
        w.close();
        QVERIFY(fileBytes(copy) == before);

        // The intact project: the check passes and the ledger opens without a second check.
        MainWindow ok;
        QVERIFY(ok.openProject(m_project));
        QTRY_VERIFY_WITH_TIMEOUT(ok.session()->integrity() == ProjectSession::Integrity::Intact, 60000);
        QVERIFY(ok.session()->ledgerFor("dr.test", &error) != nullptr);
    }

    void conceptSelectionDrivesGalleryAndViewer()
    {
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(m_project));
        QTRY_VERIFY(w.conceptBrowser()->tableModel()->rowCount() == 256);
        // Pick the concept by clicking its row in the table, as a user does.
        auto *table = w.findChild<QTableView *>("conceptTable");
        QVERIFY(table);
        const QModelIndex first = table->model()->index(0, 0);
        table->setCurrentIndex(first);
        const int latent = first.data(ConceptTableModel::LatentRole).toInt();
        QCOMPARE(w.selection()->latent(), latent);
        QTRY_VERIFY(w.galleryModel()->rowCount() > 0);
        QTRY_VERIFY(w.conceptBrowser()->topCellsModel()->rowCount() > 0);
        const GalleryItem item = w.galleryModel()->item(0);
        QCOMPARE(item.gridW, 16);

        // Opening a cell: the viewer shows it with the concept's overlay, the patient follows.
        w.selection()->setImage(item.imageId);
        QTRY_VERIFY(!w.cellViewer()->cellView()->image().isNull());
        QTRY_VERIFY(w.cellViewer()->cellView()->overlay().valid());
        QVERIFY(w.cellViewer()->cellView()->overlay().label.contains(QString::number(latent)));
        QVERIFY(w.selection()->patientId() != 0);
        auto *cohort = w.findChild<QTableView *>("cohortView");
        QCOMPARE(cohort->currentIndex().data(CohortModel::PatientIdRole).toLongLong(), w.selection()->patientId());

        // Clicking another concept of this cell switches the overlay.
        auto *cellConcepts = w.findChild<QTableWidget *>("cellConcepts");
        QVERIFY(cellConcepts && cellConcepts->rowCount() > 1);
        const int other = cellConcepts->item(1, 0)->text().toInt();
        emit cellConcepts->cellClicked(1, 0);
        QCOMPARE(w.selection()->latent(), other);
        QTRY_VERIFY(w.cellViewer()->cellView()->overlay().label.contains(QString::number(other)));

        // Viewer controls.
        auto *combo = w.findChild<QComboBox *>("colorMapCombo");
        QVERIFY(combo);
        combo->setCurrentIndex(combo->findText("magma", Qt::MatchFixedString));
        QCOMPARE(w.cellViewer()->cellView()->colorMapName().toLower(), QStringLiteral("magma"));
        auto *opacity = w.findChild<QSlider *>("opacitySlider");
        opacity->setValue(20);
        QVERIFY(std::abs(w.cellViewer()->cellView()->opacity() - 0.2) < 1e-6);

        // Selecting a patient in the cohort view shows its cells for the selected concept.
        const QModelIndex p = cohort->model()->index(0, 0);
        cohort->setCurrentIndex(p);
        QCOMPARE(w.selection()->patientId(), p.data(CohortModel::PatientIdRole).toLongLong());
        QTRY_VERIFY(w.findChild<QLabel *>("galleryTitle")->text().contains("patient"));
    }

    void runInBackgroundStaysResponsiveAndCancels()
    {
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(m_bigProject));
        QSignalSpy finished(&w, &MainWindow::taskFinished);
        w.runModels(kVit, kSae);
        QVERIFY(w.currentTask());
        // The event loop keeps turning while the run works: measure the longest gap, in wall
        // time and in the GUI thread's own CPU time. The CPU time is what the run could put on
        // the GUI thread; the wall gap also holds the time the machine did not schedule it,
        // which on a machine shared with other busy processes is the scheduler's, not ours.
        auto threadCpuMs = [] {
            timespec ts{};
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
            return qint64(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
        };
        cytosae::CpuShare machine(0, 0.0);
        QElapsedTimer clock;
        clock.start();
        qint64 last = 0, worst = 0, lastCpu = threadCpuMs(), worstCpu = 0;
        QTimer tick;
        tick.setInterval(5);
        connect(&tick, &QTimer::timeout, [&] {
            const qint64 now = clock.elapsed(), cpu = threadCpuMs();
            worst = std::max(worst, now - last);
            worstCpu = std::max(worstCpu, cpu - lastCpu);
            last = now;
            lastCpu = cpu;
        });
        tick.start();
        auto *bar = w.findChild<QProgressBar *>("taskProgress");
        QTRY_VERIFY_WITH_TIMEOUT(bar->value() >= 16, 60000);
        // The status bar says where the model runs.
        QVERIFY2(w.findChild<QLabel *>("statusText")->text().contains("run on cpu ("),
                 qPrintable(w.findChild<QLabel *>("statusText")->text()));
        w.cancelTask();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 60000);
        tick.stop();
        machine.next();
        const bool shared = machine.othersLoad() >= 0.5;
        qInfo("longest event-loop gap %lld ms wall, %lld ms of GUI-thread CPU; other processes used %.1f cores",
              static_cast<long long>(worst), static_cast<long long>(worstCpu), machine.othersLoad());
        QCOMPARE(finished.first().at(0).toBool(), false);
        QVERIFY(finished.first().at(1).toString().contains("cancelled"));
        QVERIFY2(worstCpu < 100, qPrintable(QStringLiteral("the GUI thread worked %1 ms without returning to the event loop")
                                                .arg(worstCpu)));
        if (!shared) // an idle machine: the wall-clock gap is ours too
            QVERIFY2(worst < 100, qPrintable(QStringLiteral("event loop stalled for %1 ms").arg(worst)));
        auto db = cytosae::store::ProjectDb::open(m_bigProject.toStdString(), cytosae::store::ProjectDb::OpenMode::ReadOnly);
        QCOMPARE(*db->db().queryText("SELECT status FROM run"), std::string("cancelled"));
        const int64_t stored = *db->count("SELECT count(*) FROM activation");
        QVERIFY(stored > 0 && stored < 400);
    }

    void settingsPersist()
    {
        {
            MainWindow w;
            w.show();
            QVERIFY(w.openProject(m_project));
            // The status bar names the run's device and precision (the test project ran in fp32).
            const QString status = w.findChild<QLabel *>("statusText")->text();
            QVERIFY2(status.contains(QRegularExpression("Run \\d+ \\(done, on cpu \\(\\d+ threads\\), fp32\\)")),
                     qPrintable(status));
            w.findChild<QSlider *>("opacitySlider")->setValue(77);
            w.close();
        }
        MainWindow again;
        QCOMPARE(again.findChild<QSlider *>("opacitySlider")->value(), 77);
        QVERIFY(QSettings().value("recentProjects").toStringList().contains(m_project));
        QVERIFY(again.galleryModel()->overlaysVisible());

        // Preferences: a dialog edits them; they reach the views of the next window.
        AppSettings prefs = AppSettings::load();
        SettingsDialog dialog(prefs);
        dialog.findChild<QCheckBox *>("galleryOverlaysCheck")->setChecked(false);
        dialog.findChild<QComboBox *>("deviceCombo")->setCurrentIndex(1);
        QCOMPARE(prefs.precision, QStringLiteral("auto")); // the default
        auto *precision = dialog.findChild<QComboBox *>("precisionCombo");
        precision->setCurrentIndex(precision->findData(QStringLiteral("bf16")));
        const AppSettings edited = dialog.settings();
        QCOMPARE(edited.device, QStringLiteral("cpu"));
        QCOMPARE(edited.precision, QStringLiteral("bf16"));
        edited.save();
        MainWindow third;
        QVERIFY(!third.galleryModel()->overlaysVisible());
        QCOMPARE(AppSettings::load().device, QStringLiteral("cpu"));
        QCOMPARE(AppSettings::load().precision, QStringLiteral("bf16"));
    }

private:
    QTemporaryDir m_dir;
    QString m_project, m_bigProject;
};

QTEST_MAIN(TestMainWindow)
#include "tst_mainwindow.moc"
