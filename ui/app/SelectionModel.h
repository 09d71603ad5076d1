#pragma once

// The one selection every view shares: a patient, a cell (image) and a concept (latent).
// Views set it and listen to it; a change is announced only when the value really changes,
// so views can update each other without loops.

#include <QObject>

class SelectionModel : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;

    qint64 patientId() const { return m_patientId; }
    qint64 imageId() const { return m_imageId; }
    int latent() const { return m_latent; }

public slots:
    void setPatient(qint64 id)
    {
        if (id != m_patientId) {
            m_patientId = id;
            emit patientChanged(id);
        }
    }
    void setImage(qint64 id)
    {
        if (id != m_imageId) {
            m_imageId = id;
            emit imageChanged(id);
        }
    }
    void setLatent(int latent)
    {
        if (latent != m_latent) {
            m_latent = latent;
            emit latentChanged(latent);
        }
    }
    void clear()
    {
        setPatient(0);
        setImage(0);
        setLatent(-1);
    }

signals:
    void patientChanged(qint64 id);
    void imageChanged(qint64 id);
    void latentChanged(int latent);

private:
    qint64 m_patientId = 0;
    qint64 m_imageId = 0;
    int m_latent = -1;
};
