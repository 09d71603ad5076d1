#include "model/TorchCheckpoint.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
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

// ---- The zip archive's directory, read and checked before LibTorch's reader sees it ----
//
// LibTorch's PyTorchStreamReader (miniz) allocates a record's declared uncompressed size and
// inflates into it before anything can look at it, and its constructor already reads the
// `version` record. So every record is checked here first, reading the central directory
// the way miniz does (ZIP64 end records preferred when present, ZIP64 extra fields for
// saturated sizes and offsets).

struct ZipFailure {
    std::string message;
};

[[noreturn]] void zipFail(std::string message)
{
    throw ZipFailure{std::move(message)};
}

uint64_t le(const std::string &b, size_t at, int bytes)
{
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; --i)
        v = (v << 8) | static_cast<unsigned char>(b[at + size_t(i)]);
    return v;
}

class FileReader {
public:
    FileReader(const std::string &path, uint64_t size) : m_size(size)
    {
        m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (m_fd < 0)
            zipFail(std::string("cannot open the file (") + std::strerror(errno) + ")");
    }
    ~FileReader()
    {
        if (m_fd >= 0)
            ::close(m_fd);
    }
    FileReader(const FileReader &) = delete;
    FileReader &operator=(const FileReader &) = delete;

    // Exactly n bytes at offset, which must lie inside the file.
    std::string read(uint64_t offset, uint64_t n, const char *what) const
    {
        if (offset > m_size || n > m_size - offset)
            zipFail(std::string("damaged or truncated checkpoint archive (") + what + " lies outside the file)");
        std::string out(size_t(n), '\0');
        size_t done = 0;
        while (done < n) {
            const ssize_t r = ::pread(m_fd, out.data() + done, size_t(n) - done, off_t(offset + done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                zipFail(std::string("cannot read the file (") + (r < 0 ? std::strerror(errno) : "unexpected end") +
                        ")");
            done += size_t(r);
        }
        return out;
    }

private:
    int m_fd = -1;
    uint64_t m_size = 0;
};

struct ZipEntry {
    std::string name; // full name, as stored
    uint16_t flags = 0;
    uint16_t method = 0;
    uint64_t compressedSize = 0;
    uint64_t size = 0;
    uint64_t headerOffset = 0;
    uint64_t dataOffset = 0;
};

// A record's name for messages: without the archive's root folder, printable.
std::string shownName(const std::string &name)
{
    const size_t slash = name.find('/');
    std::string rest = slash == std::string::npos ? name : name.substr(slash + 1);
    std::string out;
    for (char c : rest.substr(0, 100))
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out.empty() ? std::string("(unnamed)") : out;
}

std::string lower(std::string s)
{
    for (char &c : s)
        if (c >= 'A' && c <= 'Z')
            c = char(c - 'A' + 'a');
    return s;
}

constexpr uint64_t kMaxCentralDirectory = uint64_t(64) << 20;

std::vector<ZipEntry> readZipDirectory(const FileReader &file, uint64_t fileSize)
{
    constexpr uint64_t kEndSize = 22, kLocatorSize = 20, kZip64EndSize = 56, kCentralSize = 46, kLocalSize = 30;
    if (fileSize < kEndSize)
        zipFail("damaged or truncated checkpoint archive (too short for a zip archive)");
    // The end of central directory record: the last signature within the final 64 KB + 22.
    const uint64_t tailSize = std::min<uint64_t>(fileSize, 0xFFFF + kEndSize);
    const std::string tail = file.read(fileSize - tailSize, tailSize, "the end record");
    uint64_t endAt = UINT64_MAX;
    for (size_t i = size_t(tailSize - kEndSize) + 1; i-- > 0;)
        if (le(tail, i, 4) == 0x06054b50) {
            endAt = fileSize - tailSize + i;
            break;
        }
    if (endAt == UINT64_MAX)
        zipFail("damaged or truncated checkpoint archive (no zip end record)");
    const std::string end = file.read(endAt, kEndSize, "the end record");
    uint64_t entries = le(end, 10, 2), entriesHere = le(end, 8, 2);
    uint64_t cdSize = le(end, 12, 4), cdOffset = le(end, 16, 4);
    uint64_t disk = le(end, 4, 2), cdDisk = le(end, 6, 2);
    if (endAt >= kLocatorSize) {
        const std::string locator = file.read(endAt - kLocatorSize, kLocatorSize, "the ZIP64 locator");
        if (le(locator, 0, 4) == 0x07064b50) {
            const uint64_t at = le(locator, 8, 8);
            if (at > fileSize - std::min(fileSize, kZip64EndSize))
                zipFail("damaged checkpoint archive (ZIP64 end record outside the file)");
            const std::string z = file.read(at, kZip64EndSize, "the ZIP64 end record");
            if (le(z, 0, 4) == 0x06064b50) {
                if (le(locator, 16, 4) != 1)
                    zipFail("damaged checkpoint archive (multi-disk zip)");
                entries = le(z, 32, 8);
                entriesHere = le(z, 24, 8);
                cdSize = le(z, 40, 8);
                cdOffset = le(z, 48, 8);
                disk = le(z, 16, 4);
                cdDisk = le(z, 20, 4);
            }
        }
    }
    if (entries != entriesHere || ((disk | cdDisk) != 0 && (disk != 1 || cdDisk != 1)))
        zipFail("damaged checkpoint archive (multi-disk zip)");
    if (cdSize > kMaxCentralDirectory)
        zipFail("the zip directory declares " + std::to_string(cdSize) + " bytes, more than any checkpoint's");
    if (entries > cdSize / kCentralSize)
        zipFail("damaged checkpoint archive (the zip directory is too small for its " + std::to_string(entries) +
                " records)");
    if (cdOffset > fileSize || cdSize > fileSize - cdOffset)
        zipFail("damaged or truncated checkpoint archive (the zip directory lies outside the file)");
    const std::string cd = file.read(cdOffset, cdSize, "the zip directory");

    std::vector<ZipEntry> out;
    out.reserve(size_t(entries));
    size_t p = 0;
    for (uint64_t i = 0; i < entries; ++i) {
        if (cd.size() - p < kCentralSize || le(cd, p, 4) != 0x02014b50)
            zipFail("damaged checkpoint archive (bad zip directory entry " + std::to_string(i) + ")");
        ZipEntry e;
        e.flags = uint16_t(le(cd, p + 8, 2));
        e.method = uint16_t(le(cd, p + 10, 2));
        e.compressedSize = le(cd, p + 20, 4);
        e.size = le(cd, p + 24, 4);
        const size_t nameLen = size_t(le(cd, p + 28, 2)), extraLen = size_t(le(cd, p + 30, 2)),
                     commentLen = size_t(le(cd, p + 32, 2));
        e.headerOffset = le(cd, p + 42, 4);
        if (cd.size() - p - kCentralSize < nameLen + extraLen + commentLen)
            zipFail("damaged checkpoint archive (bad zip directory entry " + std::to_string(i) + ")");
        e.name = cd.substr(p + kCentralSize, nameLen);
        if (e.compressedSize == 0xFFFFFFFF || e.size == 0xFFFFFFFF || e.headerOffset == 0xFFFFFFFF) {
            // ZIP64 extended information: the saturated fields, in this order.
            const size_t extraAt = p + kCentralSize + nameLen;
            bool found = false;
            for (size_t x = 0; x + 4 <= extraLen;) {
                const uint64_t id = le(cd, extraAt + x, 2), len = le(cd, extraAt + x + 2, 2);
                if (x + 4 + len > extraLen)
                    break;
                if (id == 0x0001) {
                    size_t f = extraAt + x + 4;
                    const size_t fEnd = f + size_t(len);
                    for (uint64_t *field : {&e.size, &e.compressedSize, &e.headerOffset}) {
                        if (*field != 0xFFFFFFFF)
                            continue;
                        if (fEnd - f < 8)
                            zipFail("damaged checkpoint archive (short ZIP64 field of " + shownName(e.name) + ")");
                        *field = le(cd, f, 8);
                        f += 8;
                    }
                    found = true;
                    break;
                }
                x += 4 + size_t(len);
            }
            if (!found)
                zipFail("damaged checkpoint archive (" + shownName(e.name) + " lacks its ZIP64 sizes)");
        }
        p += kCentralSize + nameLen + extraLen + commentLen;
        out.push_back(std::move(e));
    }

    // Every record, not just those this reader asks for: LibTorch's reader reads `version`
    // itself, and finds records by name.
    std::map<std::string, const ZipEntry *> names;
    for (ZipEntry &e : out) {
        const std::string shown = shownName(e.name);
        if (!names.emplace(lower(e.name), &e).second)
            zipFail("record " + shown + " appears twice in the archive");
        if (e.method != 0)
            zipFail("record " + shown + " is compressed (zip method " + std::to_string(e.method) +
                    "); torch.save stores every record uncompressed, and a compressed record could unpack to "
                    "any size, so it is not read");
        if (e.flags & 0x41)
            zipFail("record " + shown + " is encrypted");
        if (e.size > fileSize)
            zipFail("record " + shown + " declares " + std::to_string(e.size) + " bytes, more than the whole file (" +
                    std::to_string(fileSize) + " bytes)");
        if (e.compressedSize != e.size)
            zipFail("record " + shown + " declares " + std::to_string(e.size) + " bytes but stores " +
                    std::to_string(e.compressedSize));
        const std::string local = file.read(e.headerOffset, kLocalSize, "a record header");
        if (le(local, 0, 4) != 0x04034b50)
            zipFail("damaged checkpoint archive (no record header for " + shown + ")");
        e.dataOffset = e.headerOffset + kLocalSize + le(local, 26, 2) + le(local, 28, 2);
        if (e.dataOffset > cdOffset || e.size > cdOffset - e.dataOffset)
            zipFail("record " + shown + " declares " + std::to_string(e.size) +
                    " bytes, more than the file holds before its directory (damaged or truncated checkpoint archive)");
    }
    // No byte range under two names: each record's bytes are read at most once per name.
    std::vector<const ZipEntry *> byOffset;
    for (const ZipEntry &e : out)
        byOffset.push_back(&e);
    std::sort(byOffset.begin(), byOffset.end(),
              [](const ZipEntry *a, const ZipEntry *b) { return a->headerOffset < b->headerOffset; });
    for (size_t i = 1; i < byOffset.size(); ++i)
        if (byOffset[i]->headerOffset < byOffset[i - 1]->dataOffset + byOffset[i - 1]->size)
            zipFail("records " + shownName(byOffset[i - 1]->name) + " and " + shownName(byOffset[i]->name) +
                    " overlap in the file");
    return out;
}

// Row-major strides for these sizes (a dimension of size 1 may have any stride).
bool rowMajor(const std::vector<int64_t> &sizes, const std::vector<int64_t> &strides)
{
    int64_t expected = 1;
    for (size_t d = sizes.size(); d-- > 0;) {
        if (sizes[d] != 1 && strides[d] != expected)
            return false;
        expected *= sizes[d];
    }
    return true;
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
    try {
        std::vector<ZipEntry> entries;
        try {
            FileReader file(path, size);
            entries = readZipDirectory(file, size);
        } catch (const ZipFailure &f) {
            return Error(f.message);
        }
        if (entries.empty())
            return Error("not a supported checkpoint: the archive is empty");
        // As LibTorch's reader: every name lives in the folder of the first record's.
        const size_t slash = entries.front().name.find('/');
        if (slash == std::string::npos)
            return Error("not a supported checkpoint: its records are not in a folder");
        archive->m_prefix = entries.front().name.substr(0, slash + 1);
        for (const ZipEntry &e : entries)
            archive->m_records[lower(e.name)] = Record{e.size, e.dataOffset};

        const Record *pickle = archive->record("data.pkl");
        if (!pickle)
            return Error("not a supported checkpoint: the archive has no data.pkl");
        if (pickle->size > kMaxPickleBytes)
            return Error("not a supported checkpoint: its data.pkl has " + std::to_string(pickle->size) +
                         " bytes, more than " + std::to_string(kMaxPickleBytes >> 20) +
                         " MB (a checkpoint's pickle is well under 1 MB)");

        archive->m_reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
        if (!archive->m_reader->hasRecord("data.pkl"))
            return Error("not a supported checkpoint: the archive has no data.pkl");
        at::DataPtr data;
        size_t n = 0;
        std::tie(data, n) = archive->m_reader->getRecord("data.pkl");
        if (n != pickle->size)
            return Error("damaged checkpoint archive (data.pkl has " + std::to_string(n) +
                         " bytes, its directory says " + std::to_string(pickle->size) + ")");
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

const TorchArchive::Record *TorchArchive::record(const std::string &name) const
{
    auto it = m_records.find(lower(m_prefix + name));
    return it == m_records.end() ? nullptr : &it->second;
}

// The storage's bytes as a 1-d tensor of its dtype, in the buffer LibTorch's reader filled
// (no copy). Its record's size was checked by the caller.
Result<at::Tensor> TorchArchive::readStorage(const TensorRef &ref, const std::string &name)
{
    const auto dtype = torch::TensorOptions().dtype(toTorch(ref.dtype));
    if (ref.storageNumel == 0)
        return torch::empty({0}, dtype);
    at::DataPtr data;
    size_t n = 0;
    std::tie(data, n) = m_reader->getRecord(name);
    const size_t expected = size_t(ref.storageNumel) * size_t(scalarTypeSize(ref.dtype));
    if (n != expected || !data.get())
        return Error("tensor data record " + name + " has " + std::to_string(n) + " bytes, expected " +
                     std::to_string(expected));
    c10::Storage storage(c10::Storage::use_byte_size_t(), n, std::move(data), nullptr, false);
    return torch::empty({0}, dtype).set_(storage, 0, {ref.storageNumel}, {1});
}

Result<at::Tensor> TorchArchive::tensor(const TensorRef &ref)
{
    const std::string name = "data/" + ref.storageKey;
    const int64_t itemSize = scalarTypeSize(ref.dtype);
    const Record *rec = record(name);
    if (!rec)
        return Error("tensor data record " + name + " is missing (truncated file?)");
    // The record must hold exactly the storage the pickle declares (torch.save writes
    // numel x itemsize bytes), and the view must stay inside it: all checked before reading.
    if (ref.storageNumel < 0 || uint64_t(ref.storageNumel) > rec->size / uint64_t(itemSize) ||
        uint64_t(ref.storageNumel) * uint64_t(itemSize) != rec->size)
        return Error("tensor data record " + name + " has " + std::to_string(rec->size) +
                     " bytes, but the pickle declares " + std::to_string(ref.storageNumel) + " " +
                     scalarTypeName(ref.dtype) + " elements (" +
                     std::to_string(uint64_t(ref.storageNumel) * uint64_t(itemSize)) + " bytes)");
    if (ref.sizes.size() != ref.strides.size() || ref.storageOffset < 0)
        return Error("invalid tensor view of " + name);
    bool empty = false;
    for (size_t d = 0; d < ref.sizes.size(); ++d) {
        if (ref.sizes[d] < 0 || ref.strides[d] < 0)
            return Error("invalid tensor view of " + name);
        empty = empty || ref.sizes[d] == 0;
    }
    int64_t numel = 0;
    if (!empty) {
        // At most as many elements as the storage has, every one of them inside it.
        numel = 1;
        int64_t maxIndex = ref.storageOffset;
        for (size_t d = 0; d < ref.sizes.size(); ++d) {
            const int64_t n = ref.sizes[d], st = ref.strides[d];
            if (numel > ref.storageNumel / n)
                return Error("tensor view of " + name + " has more elements than its storage (" +
                             std::to_string(ref.storageNumel) + ")");
            numel *= n;
            if (st > 0 && (n - 1) > (ref.storageNumel - maxIndex) / st)
                return Error("tensor view reaches past its storage " + name);
            maxIndex += (n - 1) * st;
        }
        if (maxIndex >= ref.storageNumel)
            return Error("tensor view reaches past its storage " + name);
    }
    auto known = m_storageNumel.find(ref.storageKey);
    if (known != m_storageNumel.end() && known->second != ref.storageNumel)
        return Error("storage " + ref.storageKey + " is used with inconsistent sizes");
    // Elements handed out over the archive: its distinct storages' plus a spare.
    const int64_t budget = m_budget + (known == m_storageNumel.end() ? ref.storageNumel : 0);
    if (numel > budget - m_handedOut)
        return Error("tensor views of the storages in this file add up to more than " + std::to_string(budget) +
                     " elements, more than the file holds");

    try {
        const bool whole = ref.storageOffset == 0 && numel == ref.storageNumel && rowMajor(ref.sizes, ref.strides);
        at::Tensor out;
        auto cached = m_storages.find(ref.storageKey);
        if (cached != m_storages.end() && cached->second.scalar_type() != toTorch(ref.dtype))
            return Error("storage " + ref.storageKey + " is used as two types");
        if (whole && ref.dtype == ScalarType::Float32 && cached == m_storages.end()) {
            // The common case: a tensor that is its whole float32 storage is that buffer.
            auto storage = readStorage(ref, name);
            if (!storage)
                return storage.error();
            out = storage->view(ref.sizes);
        } else {
            if (cached == m_storages.end()) {
                auto storage = readStorage(ref, name);
                if (!storage)
                    return storage.error();
                cached = m_storages.emplace(ref.storageKey, std::move(storage.value())).first;
            }
            const at::Tensor view = cached->second.as_strided(ref.sizes, ref.strides, ref.storageOffset);
            out = torch::empty(ref.sizes, torch::TensorOptions().dtype(torch::kFloat));
            out.copy_(view);
        }
        if (known == m_storageNumel.end()) {
            m_storageNumel.emplace(ref.storageKey, ref.storageNumel);
            m_budget += ref.storageNumel;
        }
        m_handedOut += numel;
        return out;
    } catch (const c10::Error &e) {
        return Error("cannot read tensor data " + name + ": " + std::string(e.what_without_backtrace()).substr(0, 300));
    } catch (const std::exception &e) {
        return Error("cannot read tensor data " + name + ": " + e.what());
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
