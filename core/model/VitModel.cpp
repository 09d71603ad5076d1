#include "model/VitModel.h"

#include <torch/torch.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <regex>
#include <sstream>

namespace cytosae::model {

namespace {

std::string shapeText(const at::Tensor &t)
{
    std::ostringstream out;
    out << "[";
    for (int64_t i = 0; i < t.dim(); ++i)
        out << (i ? ", " : "") << t.size(i);
    out << "]";
    return out.str();
}

std::string shapeText(std::initializer_list<int64_t> dims)
{
    std::ostringstream out;
    out << "[";
    bool first = true;
    for (int64_t d : dims) {
        out << (first ? "" : ", ") << d;
        first = false;
    }
    out << "]";
    return out.str();
}

// Collects tensors and turns every missing or misshapen one into one readable message.
class WeightPicker {
public:
    explicit WeightPicker(const StateDict &sd) : m_sd(sd) {}

    at::Tensor take(const std::string &name, std::initializer_list<int64_t> shape, bool optional = false)
    {
        const at::Tensor *t = m_sd.find(name);
        if (!t) {
            if (!optional)
                m_missing.push_back(name);
            return {};
        }
        bool same = t->dim() == int64_t(shape.size());
        if (same) {
            int64_t i = 0;
            for (int64_t d : shape)
                same = same && (d < 0 || t->size(i++) == d);
        }
        if (!same)
            m_wrong.push_back(name + " is " + shapeText(*t) + ", expected " + shapeText(shape));
        return *t;
    }

    Status status() const
    {
        std::string msg;
        if (!m_missing.empty()) {
            msg = "missing tensors: ";
            for (size_t i = 0; i < m_missing.size() && i < 8; ++i)
                msg += (i ? ", " : "") + m_missing[i];
            if (m_missing.size() > 8)
                msg += " and " + std::to_string(m_missing.size() - 8) + " more";
        }
        for (size_t i = 0; i < m_wrong.size() && i < 4; ++i)
            msg += (msg.empty() ? "" : "; ") + m_wrong[i];
        if (msg.empty())
            return Status::success();
        return Error(msg);
    }

private:
    const StateDict &m_sd;
    std::vector<std::string> m_missing;
    std::vector<std::string> m_wrong;
};

std::string pyText(const PyValue &v)
{
    switch (v.kind) {
    case PyValue::Kind::None: return "None";
    case PyValue::Kind::Bool: return v.boolValue ? "True" : "False";
    case PyValue::Kind::Int: return std::to_string(v.intValue);
    case PyValue::Kind::Float: {
        std::ostringstream out;
        out.precision(17);
        out << v.floatValue;
        return out.str();
    }
    case PyValue::Kind::String: return v.text;
    case PyValue::Kind::Global: return v.text;
    case PyValue::Kind::Object: {
        std::string s = v.text + "(";
        for (size_t i = 0; i < v.items.size(); ++i)
            s += (i ? ", " : "") + (v.items[i]->kind == PyValue::Kind::Object ? v.items[i]->text : pyText(*v.items[i]));
        return s + ")";
    }
    default: return v.describe();
    }
}

// Digits from the key; -1 when it does not fit (a hostile file must not throw).
int blockIndexOf(const std::string &digits)
{
    int value = -1;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return ec == std::errc() && end == digits.data() + digits.size() && value < 100000 ? value : -1;
}

} // namespace

// ------------------------------------------------------------------------------------------
// ViT

Result<VitModel> VitModel::fromStateDict(const StateDict &sd, int numHeads)
{
    const at::Tensor *patchW = sd.find("patch_embed.proj.weight");
    const at::Tensor *pos = sd.find("pos_embed");
    if (!patchW || !pos || !sd.find("cls_token"))
        return Error("not a DINOv2 ViT state dict (missing patch_embed.proj.weight, pos_embed or cls_token)");
    if (patchW->dim() != 4 || patchW->size(1) != 3 || patchW->size(2) != patchW->size(3))
        return Error("patch_embed.proj.weight is " + shapeText(*patchW) + ", expected [D, 3, p, p]");
    const int64_t dim = patchW->size(0);
    const int64_t patch = patchW->size(2);

    // Blocks: "blocks.N.*" or, with block chunking, "blocks.C.N.*" (N is global either way).
    static const std::regex flat(R"(^blocks\.(\d+)\.(norm1|attn|ls1|norm2|mlp|ls2)\..*)");
    static const std::regex chunked(R"(^blocks\.\d+\.(\d+)\.(norm1|attn|ls1|norm2|mlp|ls2)\..*)");
    std::map<int, std::string> prefixes;
    for (const auto &name : sd.names) {
        std::smatch m;
        if (std::regex_match(name, m, chunked)) {
            const std::string prefix = name.substr(0, size_t(m.position(2)));
            const int index = blockIndexOf(m[1].str());
            if (index < 0)
                return Error("unreasonable block index in " + name);
            prefixes[index] = prefix;
        } else if (std::regex_match(name, m, flat)) {
            const int index = blockIndexOf(m[1].str());
            if (index < 0)
                return Error("unreasonable block index in " + name);
            prefixes[index] = "blocks." + m[1].str() + ".";
        }
    }
    if (prefixes.empty())
        return Error("the state dict has no transformer blocks (blocks.N.*)");
    const int depth = int(prefixes.size());
    if (prefixes.rbegin()->first != depth - 1)
        return Error("transformer blocks are not numbered 0.." + std::to_string(depth - 1));

    if (pos->dim() != 3 || pos->size(2) != dim)
        return Error("pos_embed is " + shapeText(*pos) + ", expected [1, 1 + M*M, " + std::to_string(dim) + "]");
    const int64_t nPos = pos->size(1) - 1;
    const int64_t grid = int64_t(std::llround(std::sqrt(double(nPos))));
    if (grid * grid != nPos)
        return Error("pos_embed has " + std::to_string(nPos) + " patch positions, not a square grid");

    const bool swiglu = sd.has(prefixes[0] + "mlp.w12.weight");
    const std::string fc1Name = swiglu ? "mlp.w12." : "mlp.fc1.";
    const std::string fc2Name = swiglu ? "mlp.w3." : "mlp.fc2.";
    const at::Tensor *fc1 = sd.find(prefixes[0] + fc1Name + "weight");
    if (!fc1 || fc1->dim() != 2)
        return Error("missing or malformed " + prefixes[0] + fc1Name + "weight");
    const int64_t hidden = swiglu ? fc1->size(0) / 2 : fc1->size(0);

    VitModel m;
    WeightPicker pick(sd);
    m.m_clsToken = pick.take("cls_token", {1, 1, dim});
    m.m_posEmbed = *pos;
    m.m_patchW = *patchW;
    m.m_patchB = pick.take("patch_embed.proj.bias", {dim});
    m.m_normW = pick.take("norm.weight", {dim});
    m.m_normB = pick.take("norm.bias", {dim});
    if (const at::Tensor *reg = sd.find("register_tokens")) {
        if (reg->dim() != 3 || reg->size(2) != dim)
            return Error("register_tokens is " + shapeText(*reg) + ", expected [1, R, " + std::to_string(dim) + "]");
        m.m_registers = *reg;
    }
    for (int i = 0; i < depth; ++i) {
        const std::string p = prefixes[i];
        VitBlockWeights b;
        b.norm1W = pick.take(p + "norm1.weight", {dim});
        b.norm1B = pick.take(p + "norm1.bias", {dim});
        b.qkvW = pick.take(p + "attn.qkv.weight", {3 * dim, dim});
        b.qkvB = pick.take(p + "attn.qkv.bias", {3 * dim}, true);
        b.projW = pick.take(p + "attn.proj.weight", {dim, dim});
        b.projB = pick.take(p + "attn.proj.bias", {dim});
        b.ls1 = pick.take(p + "ls1.gamma", {dim}, true);
        b.norm2W = pick.take(p + "norm2.weight", {dim});
        b.norm2B = pick.take(p + "norm2.bias", {dim});
        b.fc1W = pick.take(p + fc1Name + "weight", {swiglu ? 2 * hidden : hidden, dim});
        b.fc1B = pick.take(p + fc1Name + "bias", {swiglu ? 2 * hidden : hidden});
        b.fc2W = pick.take(p + fc2Name + "weight", {dim, hidden});
        b.fc2B = pick.take(p + fc2Name + "bias", {dim});
        b.ls2 = pick.take(p + "ls2.gamma", {dim}, true);
        m.m_blocks.push_back(std::move(b));
    }
    if (Status st = pick.status(); !st)
        return st.error();

    int heads = numHeads;
    if (heads <= 0)
        heads = int(dim % 64 == 0 ? dim / 64 : (dim % 16 == 0 ? dim / 16 : 1));
    if (dim % heads != 0)
        return Error("width " + std::to_string(dim) + " is not divisible by " + std::to_string(heads) + " heads");

    m.m_info.embedDim = int(dim);
    m.m_info.depth = depth;
    m.m_info.numHeads = heads;
    m.m_info.patchSize = int(patch);
    m.m_info.mlpHidden = int(hidden);
    m.m_info.swiglu = swiglu;
    m.m_info.numRegisters = m.m_registers.defined() ? int(m.m_registers.size(1)) : 0;
    m.m_info.posGrid = int(grid);
    m.m_info.imageSize = int(grid * patch);
    return m;
}

Result<VitModel> VitModel::load(const std::string &path, int numHeads)
{
    auto archive = TorchArchive::open(path);
    if (!archive)
        return archive.error();
    const PyValue &root = (*archive)->root();
    const PyValue *dict = &root;
    std::string source = "plain DINOv2 state dict";
    bool stripBackbone = false;
    if (const PyValue *teacher = root.get("teacher")) {
        dict = teacher;
        source = "DinoBloom teacher checkpoint";
        stripBackbone = true;
    } else if (const PyValue *model = root.get("model")) {
        dict = model;
        source = "DINOv2 checkpoint ('model')";
    } else if (const PyValue *state = root.get("state_dict")) {
        dict = state;
        source = "DINOv2 checkpoint ('state_dict')";
    }
    if (dict->kind != PyValue::Kind::Dict)
        return Error("not a ViT checkpoint: expected a dict of tensors, found " + dict->describe());

    auto raw = (*archive)->stateDict(*dict);
    if (!raw)
        return raw.error();
    StateDict sd;
    for (const auto &name : raw->names) {
        if (name.find("dino_head") != std::string::npos || name.find("ibot_head") != std::string::npos)
            continue;
        if (stripBackbone && name.rfind("backbone.", 0) != 0)
            continue;
        std::string key = name;
        for (const char *prefix : {"module.", "backbone."})
            if (key.rfind(prefix, 0) == 0)
                key = key.substr(std::strlen(prefix));
        sd.insert(key, raw->tensors.at(name));
    }
    auto vit = fromStateDict(sd, numHeads);
    if (!vit)
        return vit.error();
    vit->m_info.source = source;
    return vit;
}

void VitModel::to(const c10::Device &device)
{
    auto move = [&](at::Tensor &t) {
        if (t.defined())
            t = t.to(device);
    };
    for (at::Tensor *t : {&m_clsToken, &m_posEmbed, &m_registers, &m_patchW, &m_patchB, &m_normW, &m_normB})
        move(*t);
    for (auto &b : m_blocks)
        for (at::Tensor *t : {&b.norm1W, &b.norm1B, &b.qkvW, &b.qkvB, &b.projW, &b.projB, &b.ls1, &b.norm2W, &b.norm2B,
                              &b.fc1W, &b.fc1B, &b.fc2W, &b.fc2B, &b.ls2, &b.qkvWh, &b.qkvBh, &b.projWh,
                              &b.projBh, &b.fc1Wh, &b.fc1Bh, &b.fc2Wh, &b.fc2Bh})
            move(*t);
}

StateDict VitModel::stateDict() const
{
    StateDict sd;
    sd.insert("cls_token", m_clsToken);
    sd.insert("pos_embed", m_posEmbed);
    if (m_registers.defined())
        sd.insert("register_tokens", m_registers);
    sd.insert("patch_embed.proj.weight", m_patchW);
    sd.insert("patch_embed.proj.bias", m_patchB);
    const char *fc1 = m_info.swiglu ? "mlp.w12." : "mlp.fc1.";
    const char *fc2 = m_info.swiglu ? "mlp.w3." : "mlp.fc2.";
    for (size_t i = 0; i < m_blocks.size(); ++i) {
        const VitBlockWeights &b = m_blocks[i];
        const std::string p = "blocks." + std::to_string(i) + ".";
        const std::pair<std::string, const at::Tensor *> named[] = {
            {"norm1.weight", &b.norm1W}, {"norm1.bias", &b.norm1B},   {"attn.qkv.weight", &b.qkvW},
            {"attn.qkv.bias", &b.qkvB},  {"attn.proj.weight", &b.projW}, {"attn.proj.bias", &b.projB},
            {"ls1.gamma", &b.ls1},       {"norm2.weight", &b.norm2W}, {"norm2.bias", &b.norm2B},
            {std::string(fc1) + "weight", &b.fc1W}, {std::string(fc1) + "bias", &b.fc1B},
            {std::string(fc2) + "weight", &b.fc2W}, {std::string(fc2) + "bias", &b.fc2B}, {"ls2.gamma", &b.ls2}};
        for (const auto &[name, t] : named)
            if (t->defined())
                sd.insert(p + name, *t);
    }
    sd.insert("norm.weight", m_normW);
    sd.insert("norm.bias", m_normB);
    return sd;
}

at::Tensor VitModel::positionEmbedding(int height, int width) const
{
    const int64_t gh = height / m_info.patchSize, gw = width / m_info.patchSize;
    const int64_t n = int64_t(m_info.posGrid) * m_info.posGrid;
    // dinov2 returns the stored table only for square inputs with as many patches as stored.
    if (gh * gw == n && height == width)
        return m_posEmbed;
    const int64_t dim = m_info.embedDim, grid = m_info.posGrid;
    at::Tensor cls = m_posEmbed.narrow(1, 0, 1);
    at::Tensor patches = m_posEmbed.narrow(1, 1, n).reshape({1, grid, grid, dim}).permute({0, 3, 1, 2});
    // Scale factors, not sizes: dinov2 passes scale_factor=((gh+0.1)/M, (gw+0.1)/M).
    const double sh = (double(gh) + 0.1) / double(grid);
    const double sw = (double(gw) + 0.1) / double(grid);
    at::Tensor resized = at::upsample_bicubic2d(patches, {gh, gw}, false, sh, sw);
    resized = resized.permute({0, 2, 3, 1}).reshape({1, gh * gw, dim});
    return torch::cat({cls, resized}, 1);
}

at::Tensor VitModel::embed(const at::Tensor &pixels) const
{
    const int64_t batch = pixels.size(0);
    at::Tensor x = torch::conv2d(pixels, m_patchW, m_patchB, m_info.patchSize);
    x = x.flatten(2).transpose(1, 2);
    x = torch::cat({m_clsToken.expand({batch, -1, -1}), x}, 1);
    x = x + positionEmbedding(int(pixels.size(2)), int(pixels.size(3)));
    if (m_registers.defined())
        x = torch::cat({x.narrow(1, 0, 1), m_registers.expand({batch, -1, -1}), x.narrow(1, 1, x.size(1) - 1)}, 1);
    return x;
}

at::Tensor VitModel::block(const at::Tensor &x, const VitBlockWeights &b, bool bf16) const
{
    const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2);
    const int64_t heads = m_info.numHeads, headDim = dim / heads;
    const double scale = 1.0 / std::sqrt(double(headDim));
    // A linear layer on a LayerNorm output: in bf16 the input is rounded once and the product
    // accumulates in fp32 inside oneDNN / cuBLAS.
    auto linear = [bf16](const at::Tensor &in, const at::Tensor &w, const at::Tensor &bias, const at::Tensor &wh,
                         const at::Tensor &biash) {
        return bf16 ? torch::linear(in.to(torch::kBFloat16), wh, biash) : torch::linear(in, w, bias);
    };
    auto scaled = [](const at::Tensor &branch, const at::Tensor &gamma) {
        at::Tensor f = branch.scalar_type() == torch::kFloat ? branch : branch.to(torch::kFloat);
        return gamma.defined() ? f * gamma : f;
    };

    at::Tensor h = torch::layer_norm(x, {dim}, b.norm1W, b.norm1B, 1e-6);
    at::Tensor qkv = linear(h, b.qkvW, b.qkvB, b.qkvWh, b.qkvBh)
                         .reshape({batch, tokens, 3, heads, headDim})
                         .permute({2, 0, 3, 1, 4});
    at::Tensor q = qkv[0] * scale;
    at::Tensor attn = torch::matmul(q, qkv[1].transpose(-2, -1)).softmax(-1);
    at::Tensor o = torch::matmul(attn, qkv[2]).transpose(1, 2).reshape({batch, tokens, dim});
    o = bf16 ? torch::linear(o, b.projWh, b.projBh) : torch::linear(o, b.projW, b.projB);
    at::Tensor y = x + scaled(o, b.ls1);

    h = torch::layer_norm(y, {dim}, b.norm2W, b.norm2B, 1e-6);
    if (m_info.swiglu) {
        auto parts = linear(h, b.fc1W, b.fc1B, b.fc1Wh, b.fc1Bh).chunk(2, -1);
        h = torch::silu(parts[0]) * parts[1];
    } else {
        h = torch::gelu(linear(h, b.fc1W, b.fc1B, b.fc1Wh, b.fc1Bh));
    }
    h = bf16 ? torch::linear(h, b.fc2Wh, b.fc2Bh) : torch::linear(h, b.fc2W, b.fc2B);
    return y + scaled(h, b.ls2);
}

at::Tensor VitModel::blocks(at::Tensor x, int first, int last, bool bf16) const
{
    bf16 = bf16 && hasBf16();
    for (int i = first; i <= last && i < int(m_blocks.size()); ++i)
        x = block(x, m_blocks[size_t(i)], bf16);
    return x;
}

void VitModel::prepareBf16(bool on)
{
    auto half = [on](const at::Tensor &t) {
        return on && t.defined() ? t.to(torch::kBFloat16).contiguous() : at::Tensor();
    };
    for (auto &b : m_blocks) {
        b.qkvWh = half(b.qkvW);
        b.qkvBh = half(b.qkvB);
        b.projWh = half(b.projW);
        b.projBh = half(b.projB);
        b.fc1Wh = half(b.fc1W);
        b.fc1Bh = half(b.fc1B);
        b.fc2Wh = half(b.fc2W);
        b.fc2Bh = half(b.fc2B);
    }
}

at::Tensor VitModel::finalNorm(const at::Tensor &x) const
{
    return torch::layer_norm(x, {x.size(-1)}, m_normW, m_normB, 1e-6);
}

double VitModel::macsThrough(int last, int tokens) const
{
    const double d = m_info.embedDim, n = tokens, hidden = m_info.mlpHidden;
    const double patches = n - 1 - m_info.numRegisters;
    const double mlp = m_info.swiglu ? 3.0 * d * hidden : 2.0 * d * hidden;
    const double perBlock = n * (4.0 * d * d + mlp) + 2.0 * n * n * d;
    return patches * d * 3.0 * m_info.patchSize * m_info.patchSize + perBlock * (last + 1);
}

// ------------------------------------------------------------------------------------------
// SAE

Result<SaeModel> SaeModel::fromTensors(at::Tensor wEnc, at::Tensor bEnc, at::Tensor wDec, at::Tensor bDec)
{
    if (!wEnc.defined() || wEnc.dim() != 2)
        return Error("W_enc must be a matrix [d_in, d_sae]");
    const int64_t dIn = wEnc.size(0), dSae = wEnc.size(1);
    StateDict sd;
    sd.insert("W_enc", wEnc);
    if (bEnc.defined()) sd.insert("b_enc", bEnc);
    if (wDec.defined()) sd.insert("W_dec", wDec);
    if (bDec.defined()) sd.insert("b_dec", bDec);
    WeightPicker pick(sd);
    pick.take("b_enc", {dSae});
    pick.take("W_dec", {dSae, dIn});
    pick.take("b_dec", {dIn});
    if (Status st = pick.status(); !st)
        return st.error();
    SaeModel m;
    m.m_wEnc = wEnc.contiguous();
    m.m_bEnc = bEnc.contiguous();
    m.m_wDec = wDec.contiguous();
    m.m_bDec = bDec.contiguous();
    m.m_info.dIn = int(dIn);
    m.m_info.dSae = int(dSae);
    return m;
}

Result<SaeModel> SaeModel::load(const std::string &path)
{
    auto archive = TorchArchive::open(path);
    if (!archive)
        return archive.error();
    const PyValue &root = (*archive)->root();
    const PyValue *state = root.get("state_dict");
    const PyValue *cfg = root.get("cfg");
    if (!state)
        state = &root;
    if (state->kind != PyValue::Kind::Dict)
        return Error("not an SAE checkpoint: expected {'cfg', 'state_dict'}, found " + root.describe());
    auto sd = (*archive)->stateDict(*state);
    if (!sd)
        return sd.error();
    if (!sd->has("W_enc"))
        return Error("not an SAE checkpoint: no W_enc tensor (found " + std::to_string(sd->names.size()) + " tensors)");
    auto get = [&](const char *n) { return sd->has(n) ? sd->tensors.at(n) : at::Tensor(); };
    auto sae = fromTensors(get("W_enc"), get("b_enc"), get("W_dec"), get("b_dec"));
    if (!sae)
        return sae.error();

    SaeInfo &info = sae->m_info;
    if (cfg && cfg->kind == PyValue::Kind::Object) {
        for (const auto &[k, v] : cfg->dict)
            if (k->kind == PyValue::Kind::String)
                info.config.emplace_back(k->text, pyText(*v));
        auto intField = [&](const char *name, int &out) {
            if (const PyValue *v = cfg->get(name); v && v->kind == PyValue::Kind::Int)
                out = int(v->intValue);
        };
        auto textField = [&](const char *name, std::string &out) {
            if (const PyValue *v = cfg->get(name))
                out = pyText(*v);
        };
        int dIn = info.dIn, dSae = info.dSae;
        intField("d_in", dIn);
        intField("d_sae", dSae);
        if (dIn != info.dIn || dSae != info.dSae)
            return Error("cfg says d_in " + std::to_string(dIn) + ", d_sae " + std::to_string(dSae) +
                         " but W_enc is " + shapeText({info.dIn, info.dSae}));
        intField("block_layer", info.blockLayer);
        intField("image_width", info.imageWidth);
        intField("image_height", info.imageHeight);
        textField("module_name", info.moduleName);
        textField("model_name", info.modelName);
        textField("class_token", info.classToken);
        if (info.moduleName != "" && info.moduleName != "resid")
            return Error("SAE hooks module '" + info.moduleName + "'; only 'resid' (block output) is supported");
    } else if (cfg) {
        return Error("cfg is " + cfg->describe() + ", expected a config object");
    }
    return sae;
}

void SaeModel::to(const c10::Device &device)
{
    m_wEnc = m_wEnc.to(device);
    m_bEnc = m_bEnc.to(device);
    m_wDec = m_wDec.to(device);
    m_bDec = m_bDec.to(device);
}

} // namespace cytosae::model
