// Thumbnail gallery: loader threading and lifetime, model virtualisation, view interaction.
// Runs on the offscreen platform; set GALLERY_SCREENSHOT=/path.png to keep the screenshot.

#include "gallery/GalleryItem.h"
#include "gallery/GalleryModel.h"
#include "gallery/GalleryView.h"
#include "gallery/ThumbnailLoader.h"

#include <QAbstractItemModelTester>
#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QContextMenuEvent>
#include <QMenu>
#include <QMutex>
#include <QPainter>
#include <QScrollBar>
#include <QSemaphore>
#include <QSet>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QThread>
#include <QTimer>
#include <QtTest>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

namespace {

// Offscreen unless the caller chose a platform (e.g. to watch the tests run). Set during
// static initialisation because QTEST_MAIN creates the QApplication first thing in main().
[[maybe_unused]] const bool offscreenByDefault = [] {
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    return true;
}();

// What the injected decoder saw. Shared with the DecodeFn, which runs on pool threads.
struct DecodeLog {
    std::atomic<int> calls{0};
    std::atomic<bool> blocking{false};
    QSemaphore gate;  // blocking decodes wait here until the test releases them
    QMutex mutex;
    QSet<QThread *> threads;
};

ThumbnailLoader::DecodeFn makeDecoder(const std::shared_ptr<DecodeLog> &log)
{
    return [log](const QString &path, QString *error) -> QImage {
        ++log->calls;
        {
            QMutexLocker lock(&log->mutex);
            log->threads.insert(QThread::currentThread());
        }
        if (log->blocking)
            log->gate.acquire();
        QImage image(path);
        if (image.isNull() && error)
            *error = QStringLiteral("cannot read %1").arg(path);
        return image;
    };
}

// A blood-smear-like tile: pale background, a stained cell disc, a purple nucleus.
QImage makeCellImage(int i)
{
    QImage image(160, 140, QImage::Format_RGB32);
    image.fill(QColor(0xf4, 0xe9, 0xec));
    QPainter painter(&image);
    painter.setRenderHint(QPainter::Antialiasing);
    painter.setPen(Qt::NoPen);
    painter.setBrush(QColor::fromHsv((320 + i * 23) % 360, 70 + (i * 37) % 120, 190 + (i * 11) % 60));
    const qreal radius = 40 + (i * 7) % 22;
    painter.drawEllipse(QPointF(80, 70), radius, radius);
    if (i % 3 != 0) {
        painter.setBrush(QColor::fromHsv(275, 150, 110 + (i * 13) % 70));
        painter.drawEllipse(QPointF(72 + (i % 5) * 3, 66), radius * 0.55, radius * 0.45);
    }
    return image;
}

QImage decorationImage(const QAbstractItemModel &model, int row)
{
    return qvariant_cast<QPixmap>(model.data(model.index(row, 0), Qt::DecorationRole)).toImage();
}

bool isLoadingPlaceholder(const QImage &image)
{
    return !image.isNull() && image.pixelColor(image.width() / 2, image.height() / 2) == QColor(0xe6, 0xe6, 0xe6);
}

} // namespace

class TestGallery : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void modelPassesModelTester();
    void decodesOffGuiThread();
    void onlyVisibleRowsAreDecoded();
    void scrollingDropsStaleRequests();
    void readyEmitsDataChangedForThatRowOnly();
    void cacheHitAvoidsSecondDecode();
    void failingDecodeGivesPlaceholderAndError();
    void cancelPendingDropsQueuedWork();
    void destroyingLoaderWithWorkInFlight();
    void doubleClickAndEnterActivate();
    void ctrlClickSelectsSeveral();
    void copyPathsFromContextMenuAndShortcut();
    void overlayToggleChangesPixels();
    void screenshot();

private:
    QVector<GalleryItem> makeItems(int count, qint64 firstId = 1000) const;

    QTemporaryDir m_dir;
    QStringList m_paths;
};

void TestGallery::initTestCase()
{
    QVERIFY(m_dir.isValid());
    for (int i = 0; i < 32; ++i) {
        const QString path = m_dir.filePath(QStringLiteral("cell%1.png").arg(i, 3, 10, QLatin1Char('0')));
        QVERIFY(makeCellImage(i).save(path));
        m_paths.append(path);
    }
}

QVector<GalleryItem> TestGallery::makeItems(int count, qint64 firstId) const
{
    static const char *const labels[] = {"AAA", "BLA", "EOS", "LYT", "MON", "NGS", "EBO", "MYB"};
    QVector<GalleryItem> items;
    items.reserve(count);
    for (int i = 0; i < count; ++i) {
        GalleryItem item;
        item.imageId = firstId + i;
        item.path = m_paths[i % m_paths.size()];
        item.caption = QStringLiteral("%1 \u00b7 %2").arg(0.99 - 0.013 * (i % 70), 0, 'f', 2).arg(QLatin1String(labels[i % 8]));
        items.append(item);
    }
    return items;
}

void TestGallery::modelPassesModelTester()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);

    model.setItems(makeItems(12));
    QCOMPARE(model.rowCount(), 12);
    QCOMPARE(model.data(model.index(2, 0), GalleryModel::ImageIdRole).toLongLong(), 1002);
    QCOMPARE(model.data(model.index(2, 0), GalleryModel::PathRole).toString(), m_paths[2]);
    QCOMPARE(model.data(model.index(2, 0), Qt::ToolTipRole).toString(), m_paths[2]);
    QCOMPARE(model.data(model.index(2, 0), Qt::DisplayRole).toString(), model.item(2).caption);
    QCOMPARE(model.item(99).imageId, 0); // out of range: default item, no crash
    QCOMPARE(model.rowOf(1005), 5);
    QCOMPARE(model.rowOf(42), -1);

    // Thumbnails arriving during the tester's watch: dataChanged must be well-formed.
    for (int row = 0; row < model.rowCount(); ++row)
        model.data(model.index(row, 0), Qt::DecorationRole);
    QTRY_COMPARE(loader.pendingCount(), 0);
    model.setOverlaysVisible(true);
    model.setItems({});
    QCOMPARE(model.rowCount(), 0);
    model.setOverlaysVisible(false); // no rows: no dataChanged
    model.setItems(makeItems(5, 7000));
    QCOMPARE(model.rowCount(), 5);
    QCOMPARE(model.rowOf(1005), -1);
    QCOMPARE(model.rowOf(7004), 4);
}

void TestGallery::decodesOffGuiThread()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    std::atomic<int> readyOffGui{0};
    connect(&loader, &ThumbnailLoader::thumbnailReady, this, [&readyOffGui] {
        if (QThread::currentThread() != qApp->thread())
            ++readyOffGui;
    });
    QSignalSpy ready(&loader, &ThumbnailLoader::thumbnailReady);
    for (int i = 0; i < 8; ++i)
        loader.request(i, m_paths[i]);
    QTRY_COMPARE(ready.count(), 8);
    QCOMPARE(log->calls.load(), 8);
    QCOMPARE(readyOffGui.load(), 0);
    QMutexLocker lock(&log->mutex);
    QVERIFY(!log->threads.isEmpty());
    QVERIFY(log->threads.size() <= 2); // its own pool, two threads at most
    QVERIFY(!log->threads.contains(qApp->thread()));
}

void TestGallery::onlyVisibleRowsAreDecoded()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    model.setItems(makeItems(5000));
    GalleryView view;
    view.setModel(&model);
    view.resize(420, 320);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QTRY_VERIFY(log->calls.load() > 0 && loader.pendingCount() == 0);
    QTest::qWait(100); // let the batched layout run its remaining batches
    QTRY_COMPARE(loader.pendingCount(), 0);

    const int afterShow = log->calls.load();
    QVERIFY2(afterShow < 200, qPrintable(QStringLiteral("%1 decodes for a small view").arg(afterShow)));
    // What is on screen did get decoded.
    const QModelIndex first = view.indexAt(QPoint(10, 10));
    QVERIFY(first.isValid());
    QVERIFY(!loader.cached(first.data(GalleryModel::ImageIdRole).toLongLong()).isNull());
    QVERIFY(!isLoadingPlaceholder(decorationImage(model, first.row())));

    view.scrollToBottom();
    QVERIFY(!view.viewport()->rect().intersects(view.visualRect(model.index(0, 0))));
    QList<int> visibleAtEnd;
    for (int row = 4950; row < 5000; ++row) {
        if (view.viewport()->rect().intersects(view.visualRect(model.index(row, 0))))
            visibleAtEnd.append(row);
    }
    QVERIFY(visibleAtEnd.size() >= 3);
    QVERIFY(visibleAtEnd.contains(4999));
    for (int row : std::as_const(visibleAtEnd))
        QTRY_VERIFY(!loader.cached(model.item(row).imageId).isNull());
    QTRY_COMPARE(loader.pendingCount(), 0);
    const int afterScroll = log->calls.load();
    QVERIFY2(afterScroll < 400, qPrintable(QStringLiteral("%1 decodes after scrolling to the end").arg(afterScroll)));
    QVERIFY(afterScroll > afterShow);
    qInfo("decodes: %d after showing 5000 rows, %d after scrolling to the end", afterShow, afterScroll);
}

void TestGallery::scrollingDropsStaleRequests()
{
    auto log = std::make_shared<DecodeLog>();
    log->blocking = true;
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    model.setItems(makeItems(5000));
    GalleryView view;
    view.setModel(&model);
    view.resize(420, 320);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QTRY_COMPARE(log->calls.load(), 2); // both pool threads stuck; the rest queues

    // Scroll through ten screens while nothing can finish: each scroll must drop the
    // previous screen's queued requests instead of piling them up.
    QScrollBar *bar = view.verticalScrollBar();
    for (int step = 1; step <= 10; ++step) {
        bar->setValue(step * bar->pageStep());
        QCoreApplication::processEvents();
        QTest::qWait(10);
    }
    QTest::qWait(50);
    QVERIFY2(loader.pendingCount() <= 2 + 30, qPrintable(QString::number(loader.pendingCount())));

    log->blocking = false;
    log->gate.release(1000);
    QTRY_COMPARE(loader.pendingCount(), 0);
    QVERIFY2(log->calls.load() <= 2 + 30 + 2, qPrintable(QString::number(log->calls.load())));
    // The rows on screen at the end are the ones that got decoded.
    const QModelIndex onScreen = view.indexAt(view.viewport()->rect().center());
    QVERIFY(onScreen.isValid());
    QTRY_VERIFY(!isLoadingPlaceholder(decorationImage(model, onScreen.row())));
}

void TestGallery::readyEmitsDataChangedForThatRowOnly()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    QVector<GalleryItem> items = makeItems(10);
    items[8].imageId = items[3].imageId; // the same image in two rows: both must update
    model.setItems(items);
    QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);

    QVERIFY(isLoadingPlaceholder(decorationImage(model, 3)));
    QTRY_COMPARE(changed.count(), 2);
    QSet<int> rows;
    for (const QList<QVariant> &args : std::as_const(changed)) {
        const auto topLeft = args.at(0).value<QModelIndex>();
        const auto bottomRight = args.at(1).value<QModelIndex>();
        QCOMPARE(topLeft.row(), bottomRight.row());
        QVERIFY(args.at(2).value<QList<int>>().contains(Qt::DecorationRole));
        rows.insert(topLeft.row());
    }
    QCOMPARE(rows, (QSet<int>{3, 8}));
    QCOMPARE(log->calls.load(), 1);
    QVERIFY(!isLoadingPlaceholder(decorationImage(model, 3)));
    QVERIFY(!isLoadingPlaceholder(decorationImage(model, 8)));
    QVERIFY(isLoadingPlaceholder(decorationImage(model, 4)));
}

void TestGallery::cacheHitAvoidsSecondDecode()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    QSignalSpy ready(&loader, &ThumbnailLoader::thumbnailReady);
    loader.request(7, m_paths[7]);
    loader.request(7, m_paths[7]); // in flight: not queued twice
    QCOMPARE(loader.pendingCount(), 1);
    QTRY_COMPARE(ready.count(), 1);
    QCOMPARE(ready.at(0).at(0).toLongLong(), 7);
    QCOMPARE(log->calls.load(), 1);

    const QImage thumbnail = loader.cached(7);
    QCOMPARE(thumbnail.size(), QSize(112, 98)); // 160x140 source, aspect kept
    QVERIFY(loader.error(7).isEmpty());

    loader.request(7, m_paths[7]);
    QVERIFY(!loader.isPending(7));
    QTest::qWait(50);
    QCOMPARE(log->calls.load(), 1);
    QCOMPARE(ready.count(), 1);

    loader.clearCache();
    QVERIFY(loader.cached(7).isNull());
    loader.request(7, m_paths[7]);
    QTRY_COMPARE(ready.count(), 2);
    QCOMPARE(log->calls.load(), 2);
}

void TestGallery::failingDecodeGivesPlaceholderAndError()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    QVector<GalleryItem> items = makeItems(3);
    items[1].path = m_dir.filePath(QStringLiteral("missing.png"));
    items[1].overlay = QVector<float>(4, 1.0f);
    items[1].gridW = items[1].gridH = 2;
    model.setItems(items);
    model.setOverlaysVisible(true);

    QVERIFY(isLoadingPlaceholder(decorationImage(model, 1)));
    QTRY_VERIFY(!loader.cached(items[1].imageId).isNull());
    const QImage placeholder = loader.cached(items[1].imageId);
    QCOMPARE(placeholder.size(), QSize(112, 112));
    const QColor centre = placeholder.pixelColor(56, 56);
    QVERIFY2(centre.red() > 180 && centre.green() < 80 && centre.blue() < 80, qPrintable(centre.name()));
    const QColor corner = placeholder.pixelColor(3, 3);
    QVERIFY(corner.red() == corner.green() && corner.green() == corner.blue() && corner.red() > 120);
    QVERIFY(loader.error(items[1].imageId).contains(QStringLiteral("cannot read")));
    QVERIFY(loader.error(items[1].imageId).contains(QStringLiteral("missing.png")));
    // The model shows the placeholder as is: no overlay over a cell that is not there.
    QCOMPARE(decorationImage(model, 1).convertToFormat(QImage::Format_RGB32),
             placeholder.convertToFormat(QImage::Format_RGB32));

    // A decoder that fails without saying why still leaves an error.
    ThumbnailLoader silent([](const QString &, QString *) { return QImage(); });
    silent.request(1, QStringLiteral("/nowhere/x.png"));
    QTRY_VERIFY(!silent.cached(1).isNull());
    QVERIFY(silent.error(1).contains(QStringLiteral("/nowhere/x.png")));
}

void TestGallery::cancelPendingDropsQueuedWork()
{
    auto log = std::make_shared<DecodeLog>();
    log->blocking = true;
    ThumbnailLoader loader(makeDecoder(log));
    QSignalSpy ready(&loader, &ThumbnailLoader::thumbnailReady);
    QSignalSpy cancelled(&loader, &ThumbnailLoader::requestsCancelled);
    for (int i = 0; i < 50; ++i)
        loader.request(i, m_paths[i % m_paths.size()]);
    QCOMPARE(loader.pendingCount(), 50);
    QTRY_COMPARE(log->calls.load(), 2);

    loader.cancelPending();
    QCOMPARE(cancelled.count(), 1);
    QCOMPARE(loader.pendingCount(), 2); // the two running decodes are kept
    loader.cancelPending();
    QCOMPARE(cancelled.count(), 1); // nothing more to drop: no signal

    log->blocking = false;
    log->gate.release(1000);
    QTRY_COMPARE(ready.count(), 2);
    QCOMPARE(loader.pendingCount(), 0);
    QTest::qWait(100);
    QCOMPARE(log->calls.load(), 2);
    QCOMPARE(ready.count(), 2);

    // A dropped request can be made again.
    int dropped = 0;
    while (!loader.cached(dropped).isNull())
        ++dropped;
    loader.request(dropped, m_paths[dropped % m_paths.size()]);
    QTRY_COMPARE(ready.count(), 3);
    QCOMPARE(log->calls.load(), 3);
}

void TestGallery::destroyingLoaderWithWorkInFlight()
{
    for (int round = 0; round < 60; ++round) {
        auto log = std::make_shared<DecodeLog>();
        auto *loader = new ThumbnailLoader(makeDecoder(log));
        GalleryModel model(loader);
        model.setItems(makeItems(20));
        for (int row = 0; row < 20; ++row)
            model.data(model.index(row, 0), Qt::DecorationRole);

        switch (round % 3) {
        case 0: // destroyed while everything is queued or running
            break;
        case 1: // some results delivered, some in flight
            QCoreApplication::processEvents();
            QTest::qWait(round % 5);
            break;
        case 2: // every decode finished, deliveries posted but not yet processed
            while (log->calls.load() < 20 && loader->pendingCount() > 0)
                QThread::usleep(200);
            QThread::msleep(20);
            break;
        }
        delete loader;
        QCoreApplication::processEvents(); // would run stale deliveries, had any survived
        QVERIFY(isLoadingPlaceholder(decorationImage(model, 0)) || model.loader() == nullptr);
        QCOMPARE(model.loader(), nullptr);
    }

    // Destroyed while both threads are inside the decoder: waits for them, drops the rest.
    auto log = std::make_shared<DecodeLog>();
    log->blocking = true;
    auto *loader = new ThumbnailLoader(makeDecoder(log));
    for (int i = 0; i < 10; ++i)
        loader->request(i, m_paths[i]);
    QTRY_COMPARE(log->calls.load(), 2);
    std::thread releaser([log] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        log->gate.release(1000);
    });
    delete loader;
    releaser.join();
    QCoreApplication::processEvents();
    QCOMPARE(log->calls.load(), 2);
}

void TestGallery::doubleClickAndEnterActivate()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    model.setItems(makeItems(20));
    GalleryView view;
    view.setModel(&model);
    view.resize(600, 400);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCOMPARE(view.objectName(), QStringLiteral("galleryView"));
    QCOMPARE(view.viewMode(), QListView::IconMode);
    QSignalSpy activated(&view, &GalleryView::imageActivated);

    const QRect rect = view.visualRect(model.index(4, 0));
    QVERIFY(rect.isValid());
    QTest::mouseDClick(view.viewport(), Qt::LeftButton, Qt::NoModifier, rect.center());
    QCOMPARE(activated.count(), 1);
    QCOMPARE(activated.at(0).at(0).toLongLong(), 1004);

    view.setFocus();
    view.setCurrentIndex(model.index(6, 0));
    QTest::keyClick(&view, Qt::Key_Return);
    QCOMPARE(activated.count(), 2);
    QCOMPARE(activated.at(1).at(0).toLongLong(), 1006);
    QTest::keyClick(&view, Qt::Key_Right);
    QTest::keyClick(&view, Qt::Key_Enter);
    QCOMPARE(activated.count(), 3);
    QCOMPARE(activated.at(2).at(0).toLongLong(), 1007);
    QTest::keyClick(&view, Qt::Key_End);
    QCOMPARE(view.currentIndex().row(), 19);
    QTest::keyClick(&view, Qt::Key_Home);
    QCOMPARE(view.currentIndex().row(), 0);
}

void TestGallery::ctrlClickSelectsSeveral()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    model.setItems(makeItems(20));
    GalleryView view;
    view.setModel(&model);
    view.resize(600, 400);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCOMPARE(view.selectionMode(), QAbstractItemView::ExtendedSelection);

    auto centre = [&](int row) { return view.visualRect(model.index(row, 0)).center(); };
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::NoModifier, centre(8));
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ControlModifier, centre(1));
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ControlModifier, centre(3));
    QCOMPARE(view.selectedImageIds(), (QList<qint64>{1001, 1003, 1008})); // row order
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ControlModifier, centre(3));
    QCOMPARE(view.selectedImageIds(), (QList<qint64>{1001, 1008}));
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::NoModifier, centre(5));
    QCOMPARE(view.selectedImageIds(), (QList<qint64>{1005}));
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ShiftModifier, centre(7));
    QCOMPARE(view.selectedImageIds(), (QList<qint64>{1005, 1006, 1007}));
}

void TestGallery::copyPathsFromContextMenuAndShortcut()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    model.setItems(makeItems(20));
    GalleryView view;
    view.setModel(&model);
    view.resize(600, 400);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    auto centre = [&](int row) { return view.visualRect(model.index(row, 0)).center(); };
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::NoModifier, centre(2));
    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ControlModifier, centre(9));

    QString menuText;
    QTimer poll;
    poll.setInterval(10);
    connect(&poll, &QTimer::timeout, this, [&] {
        auto *menu = qobject_cast<QMenu *>(QApplication::activePopupWidget());
        if (!menu)
            return;
        poll.stop();
        QCOMPARE(menu->objectName(), QStringLiteral("galleryContextMenu"));
        QCOMPARE(menu->actions().size(), 1);
        menuText = menu->actions().constFirst()->text();
        menu->actions().constFirst()->trigger();
        menu->close();
    });
    poll.start();
    QGuiApplication::clipboard()->clear();
    QContextMenuEvent event(QContextMenuEvent::Mouse, centre(9), view.viewport()->mapToGlobal(centre(9)));
    QCoreApplication::sendEvent(view.viewport(), &event);
    QCOMPARE(menuText, QStringLiteral("Copy 2 paths"));
    QCOMPARE(QGuiApplication::clipboard()->text(), m_paths[2] + QLatin1Char('\n') + m_paths[9]);

    // Right-clicking outside the selection acts on the clicked thumbnail alone.
    poll.start();
    QContextMenuEvent other(QContextMenuEvent::Mouse, centre(4), view.viewport()->mapToGlobal(centre(4)));
    QCoreApplication::sendEvent(view.viewport(), &other);
    QCOMPARE(menuText, QStringLiteral("Copy path"));
    QCOMPARE(QGuiApplication::clipboard()->text(), m_paths[4]);

    QTest::mouseClick(view.viewport(), Qt::LeftButton, Qt::ControlModifier, centre(6));
    QGuiApplication::clipboard()->clear();
    view.setFocus();
    QTest::keySequence(&view, QKeySequence::Copy);
    QCOMPARE(QGuiApplication::clipboard()->text(), m_paths[4] + QLatin1Char('\n') + m_paths[6]);
}

void TestGallery::overlayToggleChangesPixels()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    QVector<GalleryItem> items = makeItems(2);
    items[0].gridW = items[0].gridH = 4;
    items[0].overlay = QVector<float>(16, 0.0f);
    items[0].overlay[0] = 2.0f;  // top-left patch, above scaleMax: clamped, drawn strongest
    items[0].overlay[5] = 0.3f;  // (1, 1): weak
    items[0].scaleMax = 1.0f;
    items[1].overlay = QVector<float>(3, 1.0f); // does not match its grid: ignored
    items[1].gridW = items[1].gridH = 4;
    model.setItems(items);

    model.data(model.index(0, 0), Qt::DecorationRole);
    model.data(model.index(1, 0), Qt::DecorationRole);
    QTRY_COMPARE(loader.pendingCount(), 0);
    const QImage plain = decorationImage(model, 0).convertToFormat(QImage::Format_ARGB32);
    const QImage plainOther = decorationImage(model, 1).convertToFormat(QImage::Format_ARGB32);
    // The 112x98 thumbnail sits centred on a transparent square, so captions line up.
    QCOMPARE(plain.size(), QSize(112, 112));
    QCOMPARE(qAlpha(plain.pixel(56, 2)), 0);
    QCOMPARE(qAlpha(plain.pixel(56, 8)), 255);
    const int top = (112 - 98) / 2;
    QVERIFY(!model.overlaysVisible());

    QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
    model.setOverlaysVisible(true);
    QCOMPARE(changed.count(), 1);
    const QImage overlaid = decorationImage(model, 0).convertToFormat(QImage::Format_ARGB32);
    QCOMPARE(overlaid.size(), plain.size());
    // Patch centres of the 4x4 grid over the 112x98 image.
    const QPoint strong(14, top + 12), weak(42, top + 36), untouched(98, top + 85);
    QCOMPARE(qAlpha(overlaid.pixel(56, 2)), 0); // no overlay on the padding
    QVERIFY(overlaid.pixel(strong) != plain.pixel(strong));
    QVERIFY(overlaid.pixel(weak) != plain.pixel(weak));
    QCOMPARE(overlaid.pixel(untouched), plain.pixel(untouched));
    // Strong patches are red, shifted further from the original than weak ones.
    const QColor strongColour = overlaid.pixelColor(strong);
    QVERIFY(strongColour.red() > strongColour.green() && strongColour.red() > strongColour.blue());
    QCOMPARE(decorationImage(model, 1).convertToFormat(QImage::Format_ARGB32), plainOther);

    model.setOverlaysVisible(true); // unchanged: no signal
    QCOMPARE(changed.count(), 1);
    model.setOverlaysVisible(false);
    QCOMPARE(changed.count(), 2);
    QCOMPARE(decorationImage(model, 0).convertToFormat(QImage::Format_ARGB32), plain);
    QCOMPARE(log->calls.load(), 2); // toggling recomposites, it never decodes again
}

void TestGallery::screenshot()
{
    auto log = std::make_shared<DecodeLog>();
    ThumbnailLoader loader(makeDecoder(log));
    GalleryModel model(&loader);
    QVector<GalleryItem> items = makeItems(30);
    for (int i = 0; i < items.size(); i += 4) {
        // A blob of activation around the nucleus on a 16x16 patch grid (ViT-B/14 on 224 px).
        GalleryItem &item = items[i];
        item.gridW = item.gridH = 16;
        item.overlay = QVector<float>(256, 0.0f);
        for (int y = 0; y < 16; ++y)
            for (int x = 0; x < 16; ++x) {
                const float d2 = float((x - 7) * (x - 7) + (y - 7) * (y - 7));
                item.overlay[y * 16 + x] = d2 < 12 ? 1.0f - d2 / 12.0f : 0.0f;
            }
    }
    items[13].path = m_dir.filePath(QStringLiteral("deleted-from-share.png"));
    items[20].caption = QStringLiteral("0.51 \u00b7 a caption far too long for one thumbnail cell");
    model.setItems(items);
    model.setOverlaysVisible(true);

    GalleryView view;
    view.setModel(&model);
    view.resize(760, 640);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.selectionModel()->select(model.index(5, 0), QItemSelectionModel::Select);
    view.selectionModel()->select(model.index(6, 0), QItemSelectionModel::Select);
    QTRY_VERIFY(log->calls.load() > 0 && loader.pendingCount() == 0);
    QTest::qWait(50);
    QTRY_COMPARE(loader.pendingCount(), 0);

    const QPixmap shot = view.grab();
    QVERIFY(!shot.isNull());
    const QString out = qEnvironmentVariable("GALLERY_SCREENSHOT");
    if (!out.isEmpty())
        QVERIFY(shot.save(out));
}

QTEST_MAIN(TestGallery)

#include "tst_gallery.moc"
