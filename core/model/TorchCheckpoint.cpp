#include "model/TorchCheckpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace cytosae::model {

const at::Tensor *StateDict::find(const std::string &name) const
{
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second;
}

void StateDict::insert(const std::string &name, at::Tensor t)
{
    if (!has(name))
        names.push_back(name);
    tensors[name] = std::move(t);
}

TorchArchive::~TorchArchive() = default;

namespace {

bool looksLikeZip(const std::string &path, std::string &why)
{
    std::ifstream in(path, std::ios::binary);
    std::array<char, 4> magic{};
    in.read(magic.data(), 4);
    if (in.gcount() < 4) {
        why = "file is too short to be a checkpoint";
        return false;
    }
    if (std::memcmp(magic.data(), "PK\x03\x04", 4) == 0)
        return true;
    if (static_cast<unsigned char>(magic[0]) == 0x80)
        why = "legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a current PyTorch";
    else
        why = "not a PyTorch checkpoint (expected a zip archive written by torch.save)";
    return false;
}

c10::ScalarType toTorch(ScalarType t)
{
    switch (t) {
    case ScalarType::Float32: return c10::kFloat;
    case ScalarType::Float64: return c10::kDouble;
    case ScalarType::Float16: return c10::kHalf;
    case ScalarType::BFloat16: return c10::kBFloat16;
    case ScalarType::Int64: return c10::kLong;
    case ScalarType::Int32: return c10::kInt;
    case ScalarType::Int16: return c10::kShort;
    case ScalarType::Int8: return c10::kChar;
    case ScalarType::UInt8: return c10::kByte;
    case ScalarType::Bool: return c10::kBool;
    }
    return c10::kFloat;
}

} // namespace

Result<std::unique_ptr<TorchArchive>> TorchArchive::open(const std::string &path)
{
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        return Error("file not found");
    if (std::filesystem::is_directory(path, ec))
        return Error("is a folder, not a checkpoint file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
        return Error("cannot read file: " + ec.message());
    if (size == 0)
        return Error("file is empty (0 bytes)");
    std::string why;
    if (!looksLikeZip(path, why))
        return Error(why);

    std::unique_ptr<TorchArchive> archive(new TorchArchive());
    archive->m_path = path;
    archive->m_fileSize = size;
    try {
        archive->m_reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
        if (!archive->m_reader->hasRecord("data.pkl"))
            return Error("not a supported checkpoint: the archive has no data.pkl");
        at::DataPtr data;
        size_t n = 0;
        std::tie(data, n) = archive->m_reader->getRecord("data.pkl");
        auto parsed = parsePickle(static_cast<const uint8_t *>(data.get()), n);
        if (!parsed)
            return Error("not a supported checkpoint: " + parsed.message());
        archive->m_root = std::move(parsed.value());
    } catch (const c10::Error &e) {
        std::string msg = e.what_without_backtrace();
        if (msg.find("file read failed") != std::string::npos || msg.find("failed finding central directory") != std::string::npos ||
            msg.find("archive") != std::string::npos)
            return Error("damaged or truncated checkpoint archive (" + msg.substr(0, 200) + ")");
        return Error("cannot read checkpoint archive: " + msg.substr(0, 300));
    } catch (const std::exception &e) {
        return Error(std::string("cannot read checkpoint archive: ") + e.what());
    }
    return archive;
}

Result<at::Tensor> TorchArchive::tensor(const TensorRef &ref)
{
    const std::string record = "data/" + ref.storageKey;
    const int64_t itemSize = scalarTypeSize(ref.dtype);
    if (ref.storageNumel > int64_t(m_fileSize) / std::max<int64_t>(itemSize, 1))
        return Error("storage " + ref.storageKey + " claims " + std::to_string(ref.storageNumel) +
                     " elements, more than the file holds");
    try {
        auto it = m_storages.find(ref.storageKey);
        if (it == m_storages.end()) {
            if (!m_reader->hasRecord(record))
                return Error("tensor data record " + record + " is missing (truncated file?)");
            at::DataPtr data;
            size_t n = 0;
            std::tie(data, n) = m_reader->getRecord(record);
            const size_t expected = size_t(ref.storageNumel) * size_t(itemSize);
            if (n < expected)
                return Error("tensor data record " + record + " has " + std::to_string(n) + " bytes, expected " +
                             std::to_string(expected));
            auto storage = torch::empty({ref.storageNumel}, torch::TensorOptions().dtype(toTorch(ref.dtype)));
            if (expected > 0)
                std::memcpy(storage.data_ptr(), data.get(), expected);
            it = m_storages.emplace(ref.storageKey, storage).first;
        }
        const at::Tensor &storage = it->second;
        if (storage.numel() < ref.storageNumel)
            return Error("storage " + ref.storageKey + " is used with inconsistent sizes");
        // Bounds were checked by the pickle reader against storageNumel.
        at::Tensor view = storage.as_strided(ref.sizes, ref.strides, ref.storageOffset);
        return view.to(torch::kFloat).contiguous().clone();
    } catch (const c10::Error &e) {
        return Error("cannot read tensor data " + record + ": " + std::string(e.what_without_backtrace()).substr(0, 300));
    } catch (const std::exception &e) {
        return Error("cannot read tensor data " + record + ": " + e.what());
    }
}

Result<StateDict> TorchArchive::stateDict(const PyValue &dict)
{
    StateDict out;
    if (dict.kind != PyValue::Kind::Dict)
        return Error("expected a dict of tensors, found " + dict.describe());
    for (const auto &[key, value] : dict.dict) {
        if (key->kind != PyValue::Kind::String || value->kind != PyValue::Kind::Tensor)
            continue;
        auto t = tensor(value->tensor);
        if (!t)
            return Error(key->text + ": " + t.message());
        out.insert(key->text, std::move(t.value()));
    }
    return out;
}

} // namespace cytosae::model
