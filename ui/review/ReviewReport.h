#pragma once

// The PDF report of a pathognomonic-cell review: patient, flagged concept and threshold, each
// flagged cell with its patch overlay, the decisions with reviewer and time, the sign-off and
// the model provenance. Marked as decision support throughout.

#include <QImage>
#include <QString>
#include <QVector>

struct ReviewReportCell {
    qint64 imageId = 0;
    QImage rendered; // cell with overlay (CellView::renderToImage)
    double value = 0;
    QString decision, reviewer, at;
};

struct ReviewReportData {
    QString patient, diagnosis;
    QString concept, threshold;
    QString project, models; // provenance lines
    QString signOff;          // "signed off by X at T: n of m confirmed", or "not signed off"
    QString generatedAt;
    QVector<ReviewReportCell> cells;
};

// false and *error when the file cannot be written.
bool writeReviewReport(const QString &path, const ReviewReportData &data, QString *error);
