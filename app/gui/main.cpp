// cytosae-explorer: the desktop application. Opens the project given on the command line.

#include "app/MainWindow.h"
#include "app/SelectionModel.h"
#include "gallery/GalleryModel.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDockWidget>
#include <QTableWidget>
#include <QTimer>

namespace {

// Documentation screenshots: open the project, walk the selection the way a user would
// (a patient, its most over-represented concept, its strongest cell) and save the window
// with the cell dock and then the patient dock in front.
void scheduleScreenshots(MainWindow &w, const QString &prefix, const QString &patientCode, int latent)
{
    QTimer::singleShot(1500, &w, [&w, patientCode] {
        auto *session = w.session();
        if (!session)
            return;
        for (const auto &p : session->patients())
            if (patientCode.isEmpty() || QString::fromStdString(p.code) == patientCode) {
                w.selection()->setPatient(p.id);
                break;
            }
    });
    QTimer::singleShot(5000, &w, [&w, latent] {
        auto *table = w.findChild<QTableWidget *>(QStringLiteral("patientConcepts"));
        if (latent >= 0)
            w.selection()->setLatent(latent);
        else if (table && table->rowCount() > 0)
            w.selection()->setLatent(table->item(0, 0)->text().toInt());
    });
    QTimer::singleShot(7000, &w, [&w] {
        if (w.galleryModel()->rowCount() > 0)
            w.selection()->setImage(w.galleryModel()->item(0).imageId);
    });
    QTimer::singleShot(10000, &w, [&w, prefix] {
        w.findChild<QDockWidget *>(QStringLiteral("cellDock"))->raise();
        QTimer::singleShot(500, &w, [&w, prefix] {
            w.grab().save(prefix + "-cell.png");
            w.findChild<QDockWidget *>(QStringLiteral("patientDock"))->raise();
            QTimer::singleShot(500, &w, [&w, prefix] {
                w.grab().save(prefix + "-patient.png");
                // The review queue, when the project has a pathognomonic flag.
                w.findChild<QDockWidget *>(QStringLiteral("reviewDock"))->raise();
                QTimer::singleShot(1500, &w, [&w, prefix] {
                    w.grab().save(prefix + "-review.png");
                    // The smear field of the selected cell, when it came from one.
                    w.findChild<QDockWidget *>(QStringLiteral("smearDock"))->raise();
                    QTimer::singleShot(2500, &w, [&w, prefix] {
                        w.grab().save(prefix + "-smear.png");
                        QApplication::quit();
                    });
                });
            });
        });
    });
}

} // namespace

int main(int argc, char **argv)
{
    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("CytoSAE Explorer"));
    QApplication::setOrganizationName(QStringLiteral("CytoSAE"));
    QApplication::setApplicationVersion(QStringLiteral(CYTOSAE_VERSION));

    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Explore sparse-autoencoder concepts of blood-cell images."));
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument(QStringLiteral("project"), QStringLiteral("A project file (.cyto) to open."));
    QCommandLineOption shots(QStringLiteral("screenshots"),
                             QStringLiteral("Save documentation screenshots as PREFIX-cell.png and PREFIX-patient.png, "
                                            "then quit."),
                             QStringLiteral("PREFIX"));
    QCommandLineOption patient(QStringLiteral("patient"), QStringLiteral("Patient to show in the screenshots."),
                               QStringLiteral("CODE"));
    QCommandLineOption latent(QStringLiteral("latent"), QStringLiteral("Concept to show in the screenshots."),
                              QStringLiteral("N"));
    parser.addOption(shots);
    parser.addOption(patient);
    parser.addOption(latent);
    parser.process(app);

    MainWindow window;
    if (parser.isSet(shots))
        window.resize(1600, 1000);
    window.show();
    if (!parser.positionalArguments().isEmpty())
        window.openProject(parser.positionalArguments().first());
    if (parser.isSet(shots))
        scheduleScreenshots(window, parser.value(shots), parser.value(patient),
                            parser.isSet(latent) ? parser.value(latent).toInt() : -1);
    return app.exec();
}
