// cytosae-explorer: the desktop application. Opens the project given on the command line.

#include "app/MainWindow.h"

#include <QApplication>
#include <QCommandLineParser>

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
    parser.process(app);

    MainWindow window;
    window.show();
    if (!parser.positionalArguments().isEmpty())
        window.openProject(parser.positionalArguments().first());
    return app.exec();
}
