#include "common/ImageConvert.h"

#include "imaging/ImageDecoder.h"

#include <cstring>

QImage loadCellImage(const QString &path, QString *error)
{
    auto decoded = cytosae::imaging::decodeImageFile(path.toStdString());
    if (!decoded) {
        if (error)
            *error = QString::fromStdString(decoded.message());
        return {};
    }
    const auto &img = decoded->image;
    QImage out(img.width, img.height, QImage::Format_RGB888);
    for (int y = 0; y < img.height; ++y)
        std::memcpy(out.scanLine(y), img.pixels.data() + size_t(y) * size_t(img.width) * 3, size_t(img.width) * 3);
    return out;
}
