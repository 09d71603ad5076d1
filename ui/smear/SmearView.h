#pragma once

// A whole smear field with its detected cells outlined, each coloured by the selected
// concept's activation in that cell (the image-level maximum over patches, viridis, scaled to
// the strongest cell of the smear; grey where the concept does not fire). Wheel or Ctrl+/-
// zooms, dragging pans, Ctrl+0 fits. Clicking a cell selects it in the shared selection, so
// the cell viewer opens it; selecting a smear cell elsewhere shows its smear and marks it.
//
// The field is shown from a preview (longest side at most 4096 px) read band by band on a
// pool thread; the activations are read on a pool thread too. Only the list of smears and
// one smear's cell boxes are read on the GUI thread (index lookups).

#include <QHash>
#include <QWidget>

#include <atomic>
#include <memory>

class ProjectSession;
class QComboBox;
class QGraphicsPixmapItem;
class QGraphicsRectItem;
class QGraphicsScene;
class QGraphicsView;
class QLabel;
class SelectionModel;

class SmearView : public QWidget {
    Q_OBJECT
public:
    explicit SmearView(SelectionModel *selection, QWidget *parent = nullptr);
    ~SmearView() override;

    // nullptr or a project without smears: an empty view with a hint.
    void setSession(ProjectSession *session);
    bool showSmear(qint64 smearId);
    qint64 currentSmear() const { return m_smearId; }
    int smearCount() const;
    int cellCount() const { return int(m_cells.size()); }
    QGraphicsView *graphicsView() const { return m_view; }
    void zoomBy(double factor);
    void fitAll();

    // For tests and tools: a cell's outline in smear pixels, its colour, whether it is marked.
    QRectF cellRect(qint64 imageId) const;
    QColor cellColor(qint64 imageId) const;
    bool isMarked(qint64 imageId) const;
    bool previewLoaded() const { return m_previewLoaded; }

signals:
    void previewReady();
    void activationsReady();

private:
    void loadPreview(const QString &path, int width, int height);
    void requestActivations();
    void applyActivations(const QHash<qint64, float> &values);
    void markSelected(qint64 imageId);
    void onImageSelected(qint64 imageId);

    struct Watchers;
    SelectionModel *m_selection;
    ProjectSession *m_session = nullptr;
    QComboBox *m_smears;
    QLabel *m_status;
    QGraphicsScene *m_scene;
    QGraphicsView *m_view;
    QGraphicsPixmapItem *m_pixmap = nullptr;
    QHash<qint64, QGraphicsRectItem *> m_cells;
    qint64 m_smearId = 0;
    qint64 m_marked = 0;
    bool m_previewLoaded = false;
    int m_generation = 0; // drops results of requests that were superseded
    Watchers *m_watchers;
    std::shared_ptr<std::atomic<bool>> m_previewCancel; // of the preview being read
};
