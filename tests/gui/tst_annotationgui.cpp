// Annotation in the real main window: labelling a concept with undo/redo and the audit trail,
// stale labels after a model change, a blinded precision check answered by key, and the review
// queue of a pathognomonic flag with refused and accepted sign-off and a PDF report.

#include "annotation/AnnotationController.h"
#include "annotation/AnnotationSessionDialog.h"
#include "annotation/AuditView.h"
#include "DemoProject.h"
#include "app/MainWindow.h"
#include "app/SelectionModel.h"
#include "cohort/CohortModel.h"
#include "concepts/ConceptBrowser.h"
#include "concepts/ConceptTableModel.h"
#include "gallery/GalleryModel.h"
#include "review/ReviewPanel.h"
#include "settings/SettingsDialog.h"
#include "viewer/CellView.h"

#include "demo/DemoCohort.h"
#include "pipeline/Importer.h"
#include "pipeline/Runner.h"
#include "store/AnnotationDb.h"
#include "store/ProjectDb.h"

#include <QAction>
#include <QLabel>
#include <QPushButton>
#include <QSettings>
#include <QTableView>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QUndoStack>
#include <QProcess>
#include <QRegularExpression>
#include <QDate>
#include <QtTest>

namespace {

void setAnnotator(const QString &name)
{
    AppSettings s = AppSettings::load();
    s.annotator = name;
    s.save();
}

// Opens the project and selects the most frequent concept; returns its latent.
int openAndSelect(MainWindow &w, const QString &project)
{
    w.show();
    if (!w.openProject(project))
        return -1;
    if (!QTest::qWaitFor([&] { return w.conceptBrowser()->tableModel()->rowCount() == 256; }, 10000))
        return -1;
    auto *table = w.findChild<QTableView *>("conceptTable");
    table->setCurrentIndex(table->model()->index(0, 0));
    if (!QTest::qWaitFor([&] { return w.conceptBrowser()->topCellsModel()->rowCount() > 0; }, 10000))
        return -1;
    return w.selection()->latent();
}

QString labelCell(MainWindow &w, int latent, int column)
{
    auto *m = w.conceptBrowser()->tableModel();
    return m->data(m->index(m->rowOfLatent(latent), column), Qt::DisplayRole).toString();
}
} // namespace

class TestAnnotationGui : public QObject {
    Q_OBJECT

private slots:
    void initTestCase()
    {
        QVERIFY(m_dir.isValid());
        QStandardPaths::setTestModeEnabled(true);
        QSettings().clear();
        m_project = makeDemoProject(m_dir.path(), 1, 8, true);
    }

    void labelWithUndoRedoAndAudit()
    {
        setAnnotator(QString());
        MainWindow w;
        const int latent = openAndSelect(w, m_project);
        QVERIFY(latent >= 0);
        // Without an annotator name nothing is written, and the user is told why.
        QVERIFY(!w.labelCurrentConcept("Auer rod", "proposed"));
        QVERIFY2(w.lastMessage().contains("annotator"), qPrintable(w.lastMessage()));

        setAnnotator("dr.test");
        MainWindow w2;
        QCOMPARE(openAndSelect(w2, m_project), latent);
        QVERIFY(w2.labelCurrentConcept("Auer rod", "proposed", "looked at 8 cells"));
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Label), QString("Auer rod"));
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Status), QString("proposed"));
        // Validate keeps the name (the action needs no dialog when a label exists).
        QAction *validate = w2.findChild<QAction *>("validateLabelAction");
        QVERIFY(validate);
        QCOMPARE(validate->shortcut(), QKeySequence(QStringLiteral("Ctrl+Shift+V")));
        validate->trigger();
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Status), QString("validated"));
        QCOMPARE(w2.undoStack()->count(), 2);

        w2.undoStack()->undo();
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Status), QString("proposed"));
        w2.undoStack()->undo();
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Label), QString("—"));
        w2.undoStack()->redo();
        QCOMPARE(labelCell(w2, latent, ConceptTableModel::Label), QString("Auer rod"));

        // Append-only: five rows, the undo/redo ones say so; all in the audit view.
        auto history = w2.session()->readLedger().labelHistory();
        QCOMPARE(int(history->size()), 5);
        QCOMPARE(history->at(3).status, std::string("retracted"));
        QVERIFY(history->at(3).note.find("undo") != std::string::npos);
        QVERIFY(history->at(0).evidence.size() > 0); // the strongest cells shown were recorded
        QCOMPARE(history->at(0).author, std::string("dr.test"));
        QTRY_COMPARE(w2.auditView()->table()->rowCount(), 5);
        QCOMPARE(w2.auditView()->table()->item(0, 1)->text(), QString("dr.test"));

        // Search finds the concept by its label.
        w2.conceptBrowser()->filterModel()->setSearch("auer");
        QCOMPARE(w2.conceptBrowser()->filterModel()->rowCount(), 1);
    }

    void labelsOfOtherModelsShowAsStale()
    {
        setAnnotator("dr.test");
        const QString copy = m_dir.filePath("stale.cyto");
        QVERIFY(QFile::copy(m_project, copy));
        int latent = -1;
        {
            auto db = cytosae::store::ProjectDb::open(copy.toStdString(), cytosae::store::ProjectDb::OpenMode::Existing);
            QVERIFY(db.ok());
            cytosae::store::AnnotationDb ann(*db);
            auto stats = db->allConceptStats(1);
            latent = stats->front().latent;
            cytosae::store::LabelEntry e;
            e.concept = cytosae::store::ConceptRef::ofLatent(latent).key();
            e.label = "nucleus";
            e.status = "validated";
            e.author = "someone";
            e.models = {std::string(64, '0'), std::string(64, '1')}; // other model files
            QVERIFY(ann.appendLabel(e).ok());
        }
        MainWindow w;
        w.show();
        QVERIFY(w.openProject(copy));
        QTRY_VERIFY(w.conceptBrowser()->tableModel()->rowCount() == 256);
        QCOMPARE(labelCell(w, latent, ConceptTableModel::Label), QString("nucleus"));
        QCOMPARE(labelCell(w, latent, ConceptTableModel::Status), QString("validated · stale"));
    }

    void precisionCheckByKeyIsBlinded()
    {
        setAnnotator("dr.test");
        MainWindow w;
        const int latent = openAndSelect(w, m_project);
        QVERIFY(latent >= 0);
        const QString uid = w.createPrecisionTask("precision", 2, 3, 2);
        QVERIFY2(!uid.isEmpty(), qPrintable(w.lastMessage()));
        AnnotationSessionDialog dialog(w.session(), uid, "dr.test", AnnotationSessionDialog::Mode::Rate, &w);
        QVERIFY(dialog.isValid());
        dialog.show();
        const int n = dialog.itemCount();
        QVERIFY(n >= 3 * 2 && n <= 3 * 2 + 2); // controls only where cells stay below the threshold
        // Nothing on screen tells a control from a strong cell or names the patient.
        for (QLabel *l : dialog.findChildren<QLabel *>())
            for (const auto &p : w.session()->patients())
                QVERIFY2(!l->text().contains(QString::fromStdString(p.code)), qPrintable(l->text()));
        for (int i = 0; i < n; ++i)
            QTest::keyClick(&dialog, Qt::Key_H);
        auto answers = w.session()->readLedger().answers(uid.toStdString());
        QCOMPARE(int(answers->size()), n);
        QVERIFY(dialog.resultsHtml().contains("Recommended threshold"));
        // Every cell a hit: the task's threshold stands and is stored for the concept.
        QVERIFY(dialog.saveRecommendedThreshold());
        auto thresholds = w.session()->readLedger().validatedThresholds(w.session()->modelHashes());
        QVERIFY(thresholds->count(cytosae::store::ConceptRef::ofLatent(latent).key()));
        // Arrows move back; M changes the answer of that cell (newest answer counts).
        QTest::keyClick(&dialog, Qt::Key_Left);
        const int at = dialog.currentIndex();
        QTest::keyClick(&dialog, Qt::Key_M);
        answers = w.session()->readLedger().answers(uid.toStdString());
        int misses = 0;
        for (const auto &a : *answers)
            misses += a.answer == "miss";
        QVERIFY2(misses == 1, qPrintable(QString::number(misses)));
        QVERIFY(at < n);
    }

    void reviewQueueSignOffAndReport()
    {
        setAnnotator("dr.review");
        MainWindow w;
        const int latent = openAndSelect(w, m_project);
        QVERIFY(latent >= 0);
        QVERIFY(w.flagCurrentConcept(0.0));
        ReviewPanel *review = w.reviewPanel();
        QCOMPARE(review->flagCount(), 1);
        // The patient of the concept's strongest cell has candidates.
        const qint64 cell = w.conceptBrowser()->topCellsModel()->item(0).imageId;
        w.selection()->setImage(cell);
        QTRY_VERIFY(w.selection()->patientId() != 0);
        QTRY_VERIFY(!review->candidates().empty());
        const int n = int(review->candidates().size());
        for (size_t i = 1; i < review->candidates().size(); ++i)
            QVERIFY(review->candidates()[i - 1].value >= review->candidates()[i].value);
        QCOMPARE(review->candidateModel()->rowCount(), n);
        QVERIFY(review->cellView()->hasOverlay());
        // Reference exemplars: the concept's strongest cells of other patients, none of them a
        // candidate of this one.
        QTRY_VERIFY(review->exemplarModel()->rowCount() > 0);
        QVERIFY(review->exemplarModel()->rowCount() <= 8);
        const QString reviewed = QString::fromStdString([&] {
            for (const auto &p : w.session()->patients())
                if (p.id == w.selection()->patientId())
                    return p.code;
            return std::string();
        }());
        QVERIFY(!reviewed.isEmpty());
        for (int i = 0; i < review->exemplarModel()->rowCount(); ++i) {
            const qint64 id = review->exemplarModel()->item(i).imageId;
            auto info = w.session()->cell(id);
            QVERIFY(info.has_value());
            QVERIFY2(info->patient != reviewed, qPrintable(info->patient));
            for (const auto &c : review->candidates())
                QVERIFY(c.imageId != id);
        }

        // The cell dock says why the open cell is flagged.
        auto *why = w.findChild<QLabel *>("whyFlagged");
        QVERIFY(why);
        QTRY_VERIFY(why->isVisible());
        QVERIFY2(why->text().contains("not reviewed yet"), qPrintable(why->text()));
        // The cohort view counts the patient's flagged cells, all open.
        auto *cohort = w.findChild<CohortModel *>();
        QVERIFY(cohort);
        const int row = cohort->rowOfPatient(w.selection()->patientId());
        QTRY_COMPARE(cohort->data(cohort->index(row, CohortModel::Flagged), Qt::DisplayRole).toString(),
                     QString("%1 (%1 open)").arg(n));
        // Sign-off is refused while a candidate is open.
        QVERIFY(!review->signOff());
        QVERIFY2(w.lastMessage().contains("no decision"), qPrintable(w.lastMessage()));
        review->setFocus();
        QTest::keyClick(review, Qt::Key_C);
        for (int i = 1; i < n; ++i)
            QTest::keyClick(review, Qt::Key_R);
        int decided = 0, confirmed = 0;
        for (const auto &c : review->candidates()) {
            decided += c.decision.has_value();
            confirmed += c.decision && c.decision->decision == "confirmed";
        }
        QCOMPARE(decided, n);
        QCOMPARE(confirmed, 1);
        QVERIFY2(review->signOff(), qPrintable(w.lastMessage()));
        QTRY_COMPARE(cohort->data(cohort->index(row, CohortModel::Flagged), Qt::DisplayRole).toString(),
                     QString::number(n)); // all decided
        QVERIFY2(why->text().contains("by dr.review"), qPrintable(why->text()));
        auto signOffs = w.session()->readLedger().signOffs(w.selection()->patientId());
        QCOMPARE(signOffs->size(), size_t(1));
        QCOMPARE(signOffs->front().confirmed, int64_t(1));

        const QString pdf = m_dir.filePath("review.pdf");
        QVERIFY(review->exportReport(pdf));
        QFile f(pdf);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QVERIFY(f.read(4) == "%PDF");
        QVERIFY(f.size() > 5000); // the cell images are in it
        // Its text: the patient, every decision with its reviewer and time, the sign-off and
        // the model provenance (the hashes the decisions are bound to).
        QProcess pdfText;
        pdfText.start("pdftotext", {"-layout", pdf, "-"});
        QVERIFY2(pdfText.waitForFinished(60000) && pdfText.exitCode() == 0, "pdftotext (poppler-utils) failed");
        // NFKC: the PDF's font turns "ff", "fi" into ligatures.
        const QString report =
            QString::fromUtf8(pdfText.readAllStandardOutput()).normalized(QString::NormalizationForm_KC).simplified();
        QVERIFY2(report.contains(reviewed), qPrintable(report.left(400)));
        QCOMPARE(report.count("Decision: CONFIRMED Reviewer: dr.review Time: "), 1);
        QCOMPARE(report.count("Decision: REJECTED Reviewer: dr.review Time: "), n - 1);
        QVERIFY(!report.contains("NOT REVIEWED"));
        for (const auto &c : review->candidates())
            QVERIFY2(report.contains(QString("Cell %1 ").arg(c.imageId)), qPrintable(QString::number(c.imageId)));
        QVERIFY2(report.contains("signed off by dr.review"), qPrintable(report));
        QVERIFY2(report.contains(QString::fromStdString(w.session()->modelHashes().vit.substr(0, 12))),
                 qPrintable(report));
        QVERIFY2(report.contains(QString::fromStdString(w.session()->modelHashes().sae.substr(0, 12))),
                 qPrintable(report));
        const QString today = QDate::currentDate().toString(Qt::ISODate);
        QVERIFY2(report.count(today) >= n, qPrintable(report)); // each decision's time, and the sign-off's

        // The decisions are in the audit trail and in an export.
        w.auditView()->refresh();
        bool sawSignOff = false;
        for (int r = 0; r < w.auditView()->table()->rowCount(); ++r)
            sawSignOff |= w.auditView()->table()->item(r, 2)->text() == "sign-off";
        QVERIFY(sawSignOff);
        const QString json = m_dir.filePath("ann.json");
        QVERIFY(w.exportAnnotations(json));
        QFile j(json);
        QVERIFY(j.open(QIODevice::ReadOnly));
        const QByteArray text = j.readAll();
        QVERIFY(text.contains("\"review_signoff\""));
        QVERIFY(text.contains("dr.review"));
    }

private:
    QTemporaryDir m_dir;
    QString m_project;
};

QTEST_MAIN(TestAnnotationGui)
#include "tst_annotationgui.moc"
