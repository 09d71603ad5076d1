#include "smear/SmearView.h"

#include "app/ProjectSession.h"
#include "app/SelectionModel.h"
#include "common/ColorMap.h"
#include "imaging/SmearSource.h"
#include "store/ProjectDb.h"

#include <QComboBox>
#include <QFileInfo>
#include <QFutureWatcher>
#include <QGraphicsPixmapItem>
#include <QGraphicsRectItem>
#include <QGraphicsScene>
#include <QGraphicsView>
#include <QHBoxLayout>
#include <QLabel>
#include <QMouseEvent>
#include <QPen>
#include <QShortcut>
#include <QVBoxLayout>
#include <QWheelEvent>
#include <QtConcurrent>

#include <functional>

namespace {

constexpr int kCellIdKey = 0;
constexpr int kPreviewMaxSide = 4096;

// Zooms with the wheel around the cursor; a click without a drag on a cell reports it.
class FieldView : public QGraphicsView {
public:
    using QGraphicsView::QGraphicsView;
    std::function<void(qint64)> onCellClicked;
    // While true the field follows the view's size (it starts hidden in a tabbed dock, so the
    // first fit has no size to fit to); zooming by hand ends it, Ctrl+0 starts it again.
    bool fitMode = true;
    void fit()
    {
        if (!scene() || scene()->sceneRect().isEmpty())
            return;
        fitInView(scene()->sceneRect(), Qt::KeepAspectRatio);
    }

protected:
    void resizeEvent(QResizeEvent *e) override
    {
        QGraphicsView::resizeEvent(e);
        if (fitMode)
            fit();
    }
    void showEvent(QShowEvent *e) override
    {
        QGraphicsView::showEvent(e);
        if (fitMode)
            fit();
    }
    void wheelEvent(QWheelEvent *e) override
    {
        fitMode = false;
        const double f = e->angleDelta().y() > 0 ? 1.25 : 0.8;
        setTransformationAnchor(QGraphicsView::AnchorUnderMouse);
        scale(f, f);
        e->accept();
    }
    void mousePressEvent(QMouseEvent *e) override
    {
        m_pressPos = e->position().toPoint();
        QGraphicsView::mousePressEvent(e);
    }
    void mouseReleaseEvent(QMouseEvent *e) override
    {
        QGraphicsView::mouseReleaseEvent(e);
        if (e->button() != Qt::LeftButton || (e->position().toPoint() - m_pressPos).manhattanLength() > 4)
            return; // a pan, not a click
        for (QGraphicsItem *item : items(e->position().toPoint())) {
            const QVariant id = item->data(kCellIdKey);
            if (id.isValid() && onCellClicked) {
                onCellClicked(id.toLongLong());
                return;
            }
        }
    }

private:
    QPoint m_pressPos;
};

QPen cellPen(const QColor &c, bool marked)
{
    QPen pen(c, marked ? 4 : 2);
    pen.setCosmetic(true); // the same width at every zoom
    return pen;
}

const QColor kSilent(150, 150, 150); // the concept does not fire in this cell

} // namespace

struct SmearView::Watchers {
    QFutureWatcher<QImage> preview;
    QFutureWatcher<QHash<qint64, float>> activations;
};

SmearView::SmearView(SelectionModel *selection, QWidget *parent)
    : QWidget(parent), m_selection(selection), m_watchers(new Watchers)
{
    setObjectName(QStringLiteral("smearView"));
    m_smears = new QComboBox(this);
    m_smears->setObjectName(QStringLiteral("smearList"));
    m_smears->setToolTip(tr("Smear fields of the project"));
    m_status = new QLabel(tr("No smear fields in this project (import them with 'cytosae import --smear')."), this);
    m_status->setObjectName(QStringLiteral("smearStatus"));
    m_status->setWordWrap(true);
    m_scene = new QGraphicsScene(this);
    auto *view = new FieldView(m_scene, this);
    view->setObjectName(QStringLiteral("smearGraphicsView"));
    view->setDragMode(QGraphicsView::ScrollHandDrag);
    view->setBackgroundBrush(QColor(40, 40, 40));
    view->onCellClicked = [this](qint64 id) { m_selection->setImage(id); };
    m_view = view;

    auto *top = new QHBoxLayout;
    top->addWidget(m_smears, 1);
    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(2, 2, 2, 2);
    layout->addLayout(top);
    layout->addWidget(m_view, 1);
    layout->addWidget(m_status);

    auto shortcut = [this](const QKeySequence &key, auto fn) {
        auto *s = new QShortcut(key, m_view, fn);
        s->setContext(Qt::WidgetWithChildrenShortcut);
    };
    shortcut(QKeySequence::ZoomIn, [this] { zoomBy(1.25); });
    shortcut(QKeySequence::ZoomOut, [this] { zoomBy(0.8); });
    shortcut(QKeySequence(tr("Ctrl+0")), [this] { fitAll(); });

    connect(m_smears, &QComboBox::activated, this,
            [this](int index) { showSmear(m_smears->itemData(index).toLongLong()); });
    connect(m_selection, &SelectionModel::latentChanged, this, [this] { requestActivations(); });
    connect(m_selection, &SelectionModel::imageChanged, this, &SmearView::onImageSelected);
    connect(&m_watchers->preview, &QFutureWatcher<QImage>::finished, this, [this] {
        const int generation = m_watchers->preview.property("generation").toInt();
        if (generation != m_generation || m_watchers->preview.future().resultCount() == 0)
            return;
        const QImage image = m_watchers->preview.result();
        if (image.isNull() || !m_pixmap) {
            m_status->setText(tr(
                "The smear field's image could not be read (moved or damaged?); the cell outlines are shown alone."));
            return;
        }
        m_pixmap->setPixmap(QPixmap::fromImage(image));
        const double scale = double(m_scene->sceneRect().width()) / image.width();
        m_pixmap->setTransform(QTransform::fromScale(scale, scale));
        m_previewLoaded = true;
        emit previewReady();
    });
    connect(&m_watchers->activations, &QFutureWatcher<QHash<qint64, float>>::finished, this, [this] {
        const int generation = m_watchers->activations.property("generation").toInt();
        if (generation != m_generation || m_watchers->activations.future().resultCount() == 0)
            return;
        applyActivations(m_watchers->activations.result());
    });
}

SmearView::~SmearView()
{
    if (m_previewCancel)
        *m_previewCancel = true; // a 20,000 px field takes seconds to preview: do not wait for it
    m_watchers->preview.waitForFinished();
    m_watchers->activations.waitForFinished();
    delete m_watchers;
}

int SmearView::smearCount() const
{
    return m_smears->count();
}

void SmearView::setSession(ProjectSession *session)
{
    m_session = session;
    if (m_previewCancel)
        *m_previewCancel = true;
    m_smears->clear();
    m_scene->clear();
    m_pixmap = nullptr;
    m_cells.clear();
    m_smearId = 0;
    m_marked = 0;
    ++m_generation;
    if (!m_session)
        return;
    auto smears = m_session->db().smears();
    if (!smears) {
        m_status->setText(tr("Cannot list the smear fields: %1").arg(QString::fromStdString(smears.message())));
        return;
    }
    for (const store::SmearRecord &s : *smears) {
        if (s.qcStatus != "ok")
            continue;
        const QString name = QFileInfo(QString::fromStdString(s.path)).fileName();
        m_smears->addItem(
            tr("%1 (%2 cells%3)")
                .arg(name)
                .arg(s.cells)
                .arg(s.patientCode.empty() ? QString() : tr(", patient %1").arg(QString::fromStdString(s.patientCode))),
            QVariant::fromValue<qint64>(s.id));
    }
    if (m_smears->count() == 0) {
        m_status->setText(tr("No smear fields in this project (import them with 'cytosae import --smear')."));
        return;
    }
    showSmear(m_smears->itemData(0).toLongLong());
}

bool SmearView::showSmear(qint64 smearId)
{
    if (!m_session)
        return false;
    auto smear = m_session->db().smear(smearId);
    auto cells = m_session->db().smearCells(smearId);
    if (!smear || !cells) {
        m_status->setText(tr("Cannot show smear %1: %2")
                              .arg(smearId)
                              .arg(QString::fromStdString(!smear ? smear.message() : cells.message())));
        return false;
    }
    ++m_generation;
    m_scene->clear();
    m_cells.clear();
    m_marked = 0;
    m_previewLoaded = false;
    m_smearId = smearId;
    const int index = m_smears->findData(QVariant::fromValue<qint64>(smearId));
    if (index >= 0)
        m_smears->setCurrentIndex(index);
    m_scene->setSceneRect(0, 0, smear->width, smear->height);
    m_pixmap = m_scene->addPixmap(QPixmap());
    m_pixmap->setTransformationMode(Qt::SmoothTransformation);
    for (const store::SmearCell &c : *cells) {
        auto *item = m_scene->addRect(QRectF(c.x, c.y, c.w, c.h), cellPen(kSilent, false));
        item->setData(kCellIdKey, QVariant::fromValue<qint64>(c.imageId));
        item->setToolTip(tr("Cell %1 (detection score %2)").arg(c.imageId).arg(double(c.score), 0, 'f', 2));
        item->setZValue(1);
        m_cells.insert(c.imageId, item);
    }
    m_status->setText(tr("%1: %2 x %3 px, %4 cells at %5 µm/px. Click a cell to open it.")
                          .arg(QFileInfo(QString::fromStdString(smear->path)).fileName())
                          .arg(smear->width)
                          .arg(smear->height)
                          .arg(cells->size())
                          .arg(smear->micronsPerPixel));
    loadPreview(QString::fromStdString(smear->path), smear->width, smear->height);
    fitAll();
    markSelected(m_selection->imageId());
    requestActivations();
    return true;
}

void SmearView::loadPreview(const QString &path, int, int)
{
    if (m_previewCancel)
        *m_previewCancel = true; // superseded
    m_previewCancel = std::make_shared<std::atomic<bool>>(false);
    m_watchers->preview.setProperty("generation", m_generation);
    m_watchers->preview.setFuture(QtConcurrent::run([path, cancel = m_previewCancel]() {
        auto source = cytosae::imaging::SmearSource::open(path.toStdString());
        if (!source)
            return QImage();
        auto preview = cytosae::imaging::readSmearPreview(**source, kPreviewMaxSide, cancel.get());
        if (!preview)
            return QImage();
        QImage image(preview->pixels.data(), preview->width, preview->height, preview->width * 3,
                     QImage::Format_RGB888);
        return image.copy(); // own the pixels
    }));
}

void SmearView::requestActivations()
{
    if (!m_session || !m_smearId)
        return;
    const int latent = m_selection->latent();
    if (latent < 0 || !m_session->hasRun()) {
        applyActivations({});
        return;
    }
    const std::string path = m_session->path().toStdString();
    const qint64 runId = m_session->run().id, smearId = m_smearId;
    m_watchers->activations.setProperty("generation", m_generation);
    m_watchers->activations.setFuture(QtConcurrent::run([path, runId, smearId, latent]() {
        QHash<qint64, float> out;
        auto db = store::ProjectDb::open(path, store::ProjectDb::OpenMode::ReadOnly, store::ProjectDb::Verify::Trusted);
        if (!db)
            return out;
        auto values = db->smearCellActivations(runId, smearId, latent);
        if (values)
            for (const auto &[image, value] : *values)
                out.insert(image, value);
        return out;
    }));
}

void SmearView::applyActivations(const QHash<qint64, float> &values)
{
    float top = 0;
    for (float v : values)
        top = std::max(top, v);
    const ColorMap map;
    for (auto it = m_cells.begin(); it != m_cells.end(); ++it) {
        const auto found = values.find(it.key());
        const QColor c =
            found != values.end() && *found > 0 && top > 0 ? QColor(map.color(0.15 + 0.85 * *found / top)) : kSilent;
        it.value()->setPen(cellPen(c, it.key() == m_marked));
        it.value()->setZValue(found != values.end() ? 2 + double(*found) : 1);
    }
    emit activationsReady();
}

void SmearView::markSelected(qint64 imageId)
{
    if (auto *old = m_cells.value(m_marked)) {
        QPen pen = old->pen();
        pen.setWidth(2);
        old->setPen(pen);
    }
    m_marked = 0;
    if (auto *item = m_cells.value(imageId)) {
        QPen pen = item->pen();
        pen.setWidth(4);
        item->setPen(pen);
        m_marked = imageId;
    }
}

void SmearView::onImageSelected(qint64 imageId)
{
    if (!m_session || imageId <= 0) {
        markSelected(0);
        return;
    }
    if (!m_cells.contains(imageId)) {
        auto smearId = m_session->db().smearOfImage(imageId);
        if (!smearId || *smearId == 0 || !showSmear(*smearId)) {
            markSelected(0);
            return;
        }
    }
    markSelected(imageId);
    if (auto *item = m_cells.value(imageId))
        m_view->ensureVisible(item, 20, 20);
}

void SmearView::zoomBy(double factor)
{
    static_cast<FieldView *>(m_view)->fitMode = false;
    m_view->setTransformationAnchor(QGraphicsView::AnchorViewCenter);
    m_view->scale(factor, factor);
}

void SmearView::fitAll()
{
    auto *view = static_cast<FieldView *>(m_view);
    view->fitMode = true;
    view->fit();
}

QRectF SmearView::cellRect(qint64 imageId) const
{
    const auto *item = m_cells.value(imageId);
    return item ? item->rect() : QRectF();
}

QColor SmearView::cellColor(qint64 imageId) const
{
    const auto *item = m_cells.value(imageId);
    return item ? item->pen().color() : QColor();
}

bool SmearView::isMarked(qint64 imageId) const
{
    return imageId != 0 && imageId == m_marked;
}
