// GUI benchmark (issue 5) on a large project, e.g. the 100,000-cell synthetic project that
// `bench_store --synthetic 100000` leaves in /tmp/cytosae-bench/synthetic.cyto:
//  - opening the project: main window shown with the project's views filled (target < 1 s);
//  - switching the concept in the cell viewer: selection change to repainted view (< 16 ms);
//  - scrolling the gallery over a patient's 1,000 cells: time per scroll step including the
//    repaint (< 16 ms); thumbnails are decoded by the loader's pool threads only;
//  - peak resident memory (< 1 GB).
// Run with QT_QPA_PLATFORM=offscreen. Usage: bench_gui [PROJECT]

#include "app/MainWindow.h"
#include "app/SelectionModel.h"
#include "cohort/CohortModel.h"
#include "concepts/ConceptBrowser.h"
#include "concepts/ConceptTableModel.h"
#include "gallery/GalleryModel.h"
#include "viewer/CellView.h"
#include "viewer/CellViewerPanel.h"

#include <QApplication>
#include <QElapsedTimer>
#include <QListView>
#include <QScrollBar>
#include <QStandardPaths>
#include <QTableView>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>

namespace {
double percentile(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}
void settle(int ms)
{
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < ms)
        QApplication::processEvents(QEventLoop::AllEvents, 10);
}
} // namespace

int main(int argc, char **argv)
{
    QApplication app(argc, argv);
    QStandardPaths::setTestModeEnabled(true);
    const QString project = argc > 1 ? QString::fromLocal8Bit(argv[1]) : QStringLiteral("/tmp/cytosae-bench/synthetic.cyto");
    std::printf("bench_gui: %s\n", qPrintable(project));

    QElapsedTimer open;
    open.start();
    MainWindow w;
    w.resize(1500, 950);
    w.show();
    if (!w.openProject(project)) {
        std::fprintf(stderr, "error: %s\n", qPrintable(w.lastMessage()));
        return 1;
    }
    // The clock stops when every view is filled: the cohort table has every patient and the
    // concept table every latent of the run (it loads in the background).
    const int latents = w.session()->hasRun() ? w.session()->run().dSae : 0;
    const int patients = int(w.session()->patients().size());
    while (open.elapsed() < 120000 && (w.cohortModel()->rowCount() < patients ||
                                      w.conceptBrowser()->tableModel()->rowCount() < latents))
        QApplication::processEvents(QEventLoop::AllEvents, 1);
    const double openMs = double(open.nsecsElapsed()) / 1e6;
    if (w.conceptBrowser()->tableModel()->rowCount() < latents) {
        std::fprintf(stderr, "error: the concept table was not filled within 2 minutes\n");
        return 1;
    }
    settle(1000); // statistics and the rest settle before the interaction timings

    // A cell to show; the synthetic project's files do not exist, so a stand-in image.
    auto *session = w.session();
    auto ids = session->db().db().prepare("SELECT image_id FROM activation ORDER BY image_id LIMIT 1");
    if (!ids || !ids->step())
        return 1;
    const qint64 imageId = ids->columnInt(0);
    w.selection()->setImage(imageId);
    settle(300);
    QImage standIn(144, 144, QImage::Format_RGB888);
    standIn.fill(QColor(230, 190, 200));
    w.cellViewer()->setImage(standIn);
    const auto concepts = session->conceptsOfCell(imageId);
    std::vector<double> switchMs, selectMs;
    for (int i = 0; i < std::min<int>(60, int(concepts.size())); ++i) {
        QElapsedTimer t;
        t.start();
        w.selection()->setLatent(concepts[i].latent);
        selectMs.push_back(double(t.nsecsElapsed()) / 1e6);
        w.cellViewer()->cellView()->repaint();
        switchMs.push_back(double(t.nsecsElapsed()) / 1e6);
        QApplication::processEvents(); // gallery results arrive between switches, as for a user
    }

    std::vector<double> repaintOnlyMs;
    for (int i = 0; i < 20; ++i) {
        QElapsedTimer t;
        t.start();
        w.cellViewer()->cellView()->repaint();
        repaintOnlyMs.push_back(double(t.nsecsElapsed()) / 1e6);
    }
    std::printf("cell view size %dx%d, repaint without change: median %.2f ms\n", w.cellViewer()->cellView()->width(),
                w.cellViewer()->cellView()->height(), percentile(repaintOnlyMs, 0.5));

    // Gallery: a patient's 1,000 cells (no concept), scrolled by half pages.
    w.selection()->setLatent(-1);
    w.selection()->setPatient(1);
    settle(500);
    auto *gallery = w.findChild<QListView *>(QStringLiteral("cellGallery"));
    std::vector<double> scrollMs;
    QScrollBar *bar = gallery->verticalScrollBar();
    for (int i = 0; i < 80 && bar->value() < bar->maximum(); ++i) {
        QElapsedTimer t;
        t.start();
        bar->setValue(bar->value() + std::max(1, bar->pageStep() / 2));
        gallery->viewport()->repaint();
        scrollMs.push_back(double(t.nsecsElapsed()) / 1e6);
        QApplication::processEvents();
    }
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    const double rssMb = double(u.ru_maxrss) / 1024.0;

    std::printf("%-52s %10s %10s   %s\n", "measure", "median", "p95", "target");
    std::printf("%-52s %10.1f %10s   < 1000 ms (%s)\n", "open project, window shown and filled, ms", openMs, "",
                openMs < 1000 ? "met" : "NOT met");
    std::printf("%-52s %10.2f %10.2f   < 16 ms (%s)\n", "switch concept in the cell viewer + repaint, ms",
                percentile(switchMs, 0.5), percentile(switchMs, 0.95), percentile(switchMs, 0.95) < 16 ? "met" : "NOT met");
    std::printf("%-52s %10.2f %10.2f\n", "  of which the selection change (all views), ms", percentile(selectMs, 0.5),
                percentile(selectMs, 0.95));
    std::printf("%-52s %10.2f %10.2f   < 16 ms (%s)\n", "gallery scroll step + repaint, ms", percentile(scrollMs, 0.5),
                percentile(scrollMs, 0.95), percentile(scrollMs, 0.95) < 16 ? "met" : "NOT met");
    std::printf("%-52s %10.0f %10s   < 1024 MB (%s)\n", "peak resident memory, MB", rssMb, "", rssMb < 1024 ? "met" : "NOT met");
    std::printf("(%zu concept switches, %zu scroll steps, %lld gallery items)\n", switchMs.size(), scrollMs.size(),
                (long long)w.galleryModel()->rowCount());
    return 0;
}
