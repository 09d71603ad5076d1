#include "train/Activations.h"

#include "imaging/ImageDecoder.h"

#include <torch/torch.h>

namespace cytosae::train {

Result<ActivationSet> collectActivations(const model::VitModel &vit, const std::vector<std::string> &paths,
                                         int blockIndex, int64_t maxTokens, const c10::Device &device,
                                         const ProgressCallback &progress, const std::atomic<bool> *cancel)
{
    const int size = vit.info().imageSize;
    const int tokens = 1 + vit.info().numRegisters + vit.info().posGrid * vit.info().posGrid;
    const int64_t maxImages = std::max<int64_t>(1, maxTokens / tokens);
    const size_t n = std::min<size_t>(paths.size(), size_t(maxImages));
    ActivationSet out;
    out.tokensPerImage = tokens;
    std::vector<at::Tensor> parts;
    ProgressMeter meter("activations", int64_t(n), progress);
    constexpr size_t kBatch = 16;
    const size_t perImage = size_t(3) * size_t(size) * size_t(size);
    try {
        c10::InferenceMode guard;
        for (size_t first = 0; first < n; first += kBatch) {
            if (cancel && cancel->load())
                return Error("cancelled");
            std::vector<float> chw;
            int count = 0;
            for (size_t i = first; i < std::min(n, first + kBatch); ++i) {
                auto img = imaging::decodeImageFile(paths[i]);
                if (!img) {
                    out.failures.emplace_back(paths[i], img.message());
                    continue;
                }
                chw.resize(perImage * size_t(count + 1));
                model::preprocessToChw({img->image.pixels.data(), img->image.width, img->image.height}, size, {},
                                       chw.data() + perImage * size_t(count));
                out.used.push_back(paths[i]);
                ++count;
            }
            if (count > 0) {
                at::Tensor x = torch::from_blob(chw.data(), {count, 3, size, size}, torch::kFloat).to(device);
                at::Tensor r = vit.blocks(vit.embed(x), 0, blockIndex);
                parts.push_back(r.reshape({-1, r.size(2)}).to(torch::kCPU).clone());
            }
            meter.report(int64_t(std::min(n, first + kBatch)));
        }
    } catch (const c10::Error &e) {
        return Error(std::string("ViT forward failed: ") + e.what_without_backtrace());
    }
    if (parts.empty())
        return Error("no usable images to train on");
    out.tokens = torch::cat(parts, 0);
    return out;
}

} // namespace cytosae::train
