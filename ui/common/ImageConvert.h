#pragma once

// Project images as QImages. Decoding goes through core's checked decoder (the same pixels
// the model saw, before resizing); callable from any thread.

#include <QImage>
#include <QString>

QImage loadCellImage(const QString &path, QString *error = nullptr);
