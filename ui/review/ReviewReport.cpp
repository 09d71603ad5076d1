#include "review/ReviewReport.h"

#include <QFile>
#include <QPageSize>
#include <QPainter>
#include <QPdfWriter>

bool writeReviewReport(const QString &path, const ReviewReportData &data, QString *error)
{
    {
        QFile probe(path);
        if (!probe.open(QIODevice::WriteOnly)) {
            if (error)
                *error = QObject::tr("%1: cannot be written (%2)").arg(path, probe.errorString());
            return false;
        }
    }
    QPdfWriter pdf(path);
    pdf.setPageSize(QPageSize(QPageSize::A4));
    pdf.setResolution(150);
    pdf.setTitle(QObject::tr("Pathognomonic cell review — %1").arg(data.patient));
    pdf.setCreator(QStringLiteral("CytoSAE Explorer"));
    QPainter p;
    if (!p.begin(&pdf)) {
        if (error)
            *error = QObject::tr("%1: the PDF could not be started").arg(path);
        return false;
    }
    const int w = pdf.width(), h = pdf.height();
    const int margin = 0;
    int y = 0;
    QFont body = p.font();
    body.setPointSizeF(9);
    QFont title = body;
    title.setPointSizeF(15);
    title.setBold(true);
    QFont bold = body;
    bold.setBold(true);

    auto footer = [&] {
        p.setFont(body);
        p.setPen(Qt::darkRed);
        p.drawText(QRect(margin, h - 60, w, 60), Qt::AlignLeft | Qt::AlignVCenter | Qt::TextWordWrap,
                   QObject::tr("Decision support only: concepts are statistical features of a model, not a diagnosis. "
                               "Every flagged cell was reviewed by a person; see decisions above."));
        p.setPen(Qt::black);
    };
    auto line = [&](const QString &text, const QFont &font, int extra = 6) {
        p.setFont(font);
        const QRect r = p.boundingRect(QRect(margin, y, w, h), Qt::TextWordWrap, text);
        p.drawText(r, Qt::TextWordWrap, text);
        y += r.height() + extra;
    };

    line(QObject::tr("Pathognomonic cell review"), title, 10);
    line(QObject::tr("DECISION SUPPORT — NOT A DIAGNOSIS"), bold, 12);
    line(QObject::tr("Patient: %1    Diagnosis on file: %2").arg(data.patient, data.diagnosis.isEmpty() ? QObject::tr("none") : data.diagnosis), bold);
    line(QObject::tr("Flagged concept: %1    threshold (max patch activation): %2").arg(data.concept, data.threshold), body);
    line(QObject::tr("Sign-off: %1").arg(data.signOff), body);
    line(QObject::tr("Project: %1").arg(data.project), body);
    line(QObject::tr("Models: %1").arg(data.models), body);
    line(QObject::tr("Report generated %1 (UTC). %2 flagged cells.").arg(data.generatedAt).arg(data.cells.size()), body, 14);

    const int thumb = 330, rowH = thumb + 20;
    for (int i = 0; i < data.cells.size(); ++i) {
        if (y + rowH > h - 80) {
            footer();
            pdf.newPage();
            y = 0;
        }
        const ReviewReportCell &c = data.cells[i];
        if (!c.rendered.isNull()) {
            const QImage img = c.rendered.scaled(thumb * 2, thumb, Qt::KeepAspectRatio, Qt::SmoothTransformation);
            p.drawImage(QPoint(margin, y), img);
        }
        p.setFont(bold);
        const int tx = margin + thumb * 2 + 30;
        p.drawText(QRect(tx, y, w - tx, 40), Qt::AlignLeft, QObject::tr("Cell %1").arg(c.imageId));
        p.setFont(body);
        p.drawText(QRect(tx, y + 45, w - tx, thumb), Qt::TextWordWrap,
                   QObject::tr("Activation (max patch): %1\nDecision: %2\nReviewer: %3\nTime: %4")
                       .arg(c.value, 0, 'f', 3)
                       .arg(c.decision.isEmpty() ? QObject::tr("NOT REVIEWED") : c.decision.toUpper())
                       .arg(c.reviewer.isEmpty() ? QObject::tr("–") : c.reviewer)
                       .arg(c.at.isEmpty() ? QObject::tr("–") : c.at));
        y += rowH;
    }
    footer();
    p.end();
    return true;
}
