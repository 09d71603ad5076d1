#include "model/ModelFiles.h"

#include "model/CheckpointWriter.h"

#include <cstdio>

namespace cytosae::model {

namespace {
std::string scientific(double v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3e", v);
    return buf;
}
} // namespace

Status saveSaeFile(const std::string &path, const SaeFileContent &c)
{
    const int64_t dIn = c.dIn, dSae = c.dSae;
    if (int64_t(c.wEnc.size()) != dIn * dSae || int64_t(c.wDec.size()) != dIn * dSae || int64_t(c.bEnc.size()) != dSae ||
        int64_t(c.bDec.size()) != dIn)
        return Error(path + ": SAE tensors do not match d_in " + std::to_string(dIn) + " and d_sae " + std::to_string(dSae));
    using namespace py;
    // Every attribute of the reference ViTSAERunnerConfig, in its order, so the reference
    // code (and ours) reads this file like one it wrote itself.
    const std::string runName = std::to_string(dSae) + "-L1-" + scientific(c.l1Coefficient).substr(0, 5) + "-LR-" +
                                std::to_string(c.lr).substr(0, 6) + "-Tokens-" + scientific(double(c.totalTrainingTokens));
    PickleFields cfg = {
        {"custom_clip_ckpt_path", none()},
        {"class_token", none()},
        {"image_width", integer(c.imageSize)},
        {"image_height", integer(c.imageSize)},
        {"model_name", text(c.modelName)},
        {"module_name", text("resid")},
        {"block_layer", integer(c.blockLayer)},
        {"dataset_path", text(c.datasetPath)},
        {"image_key", text("image")},
        {"label_key", text("label")},
        {"use_cached_activations", none()},
        {"cached_activations_path", none()},
        {"d_in", integer(dIn)},
        {"total_training_tokens", integer(c.totalTrainingTokens)},
        {"n_batches_in_store", integer(15)},
        {"store_size", integer(0)},
        {"max_batch_size_for_vit_forward_pass", integer(1024)},
        {"create_dataloader", boolean(true)},
        {"device", device("cpu")},
        {"seed", integer(c.seed)},
        {"dtype", global("torch", "float32")},
        {"b_dec_init_method", text("geometric_median")},
        {"expansion_factor", integer(c.expansionFactor)},
        {"from_pretrained_path", none()},
        {"gated_sae", none()},
        {"l1_coefficient", real(c.l1Coefficient)},
        {"lr", real(c.lr)},
        {"lr_scheduler_name", text("constantwithwarmup")},
        {"lr_warm_up_steps", integer(c.warmupSteps)},
        {"batch_size", integer(c.batchSize)},
        {"mse_cls_coefficient", real(1.0)},
        {"use_ghost_grads", boolean(c.useGhostGrads)},
        {"feature_sampling_window", integer(64)},
        {"feature_sampling_method", none()},
        {"resample_batches", integer(32)},
        {"feature_reinit_scale", real(0.2)},
        {"dead_feature_window", integer(c.deadFeatureWindow)},
        {"dead_feature_estimation_method", text("no_fire")},
        {"dead_feature_threshold", real(1e-6)},
        {"log_to_wandb", boolean(false)},
        {"wandb_project", text("cytosae")},
        {"wandb_entity", none()},
        {"wandb_log_frequency", integer(20)},
        {"n_checkpoints", integer(0)},
        {"checkpoint_path", text("cytosae-explorer")},
        {"d_sae", integer(dSae)},
        {"run_name", text(runName)},
    };
    PickleFields state = {{"W_enc", tensorF32({dIn, dSae}, c.wEnc.data())},
                          {"b_enc", tensorF32({dSae}, c.bEnc.data())},
                          {"W_dec", tensorF32({dSae, dIn}, c.wDec.data())},
                          {"b_dec", tensorF32({dIn}, c.bDec.data())}};
    return writeTorchSave(path, dict(PickleFields{{"cfg", object("src.sae_training.config", "ViTSAERunnerConfig", cfg)},
                                                  {"state_dict", orderedDict(state)}}));
}

Status saveVitFile(const std::string &path, const std::vector<NamedTensor> &backbone, const std::vector<NamedTensor> &extra)
{
    PickleFields entries;
    for (const auto &t : backbone)
        entries.emplace_back("backbone." + t.name, py::tensorF32(t.shape, t.data.data()));
    for (const auto &t : extra)
        entries.emplace_back(t.name, py::tensorF32(t.shape, t.data.data()));
    return writeTorchSave(path, py::dict(PickleFields{{"teacher", py::orderedDict(entries)}}));
}

} // namespace cytosae::model
