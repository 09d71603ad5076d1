#pragma once

// Reads torch.save zip archives without Python: the pickle through our data-only
// interpreter (Pickle.h), tensor bytes through LibTorch's zip reader. Internal to core/model
// (it exposes at::Tensor); other layers use Engine.h.
//
// Memory is bounded by the file, checked before anything is read or allocated: open() first
// reads the zip's central directory itself and refuses compressed records (torch.save stores
// every record uncompressed; a compressed one could inflate to any size), records whose
// declared size exceeds the file, overlapping records (one byte range under many names) and
// duplicate names; data.pkl is at most kMaxPickleBytes and its values at most
// PickleLimits::maxBytes. tensor() checks the storage's record size against the pickle's
// element count, and a view's element count against its storage, before reading; over one
// archive, the float32 elements handed out stay within the distinct storages' elements plus
// kSpareElements.

#include "common/Result.h"
#include "model/Pickle.h"

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>

namespace caffe2::serialize {
class PyTorchStreamReader;
}

namespace cytosae::model {

// Name -> tensor, in file order. Tensors are float32 and contiguous on the CPU.
struct StateDict {
    std::vector<std::string> names;
    std::map<std::string, at::Tensor> tensors;

    bool has(const std::string &name) const { return tensors.count(name) != 0; }
    const at::Tensor *find(const std::string &name) const;
    void insert(const std::string &name, at::Tensor t);
};

class TorchArchive {
public:
    // The largest data.pkl read: a published checkpoint's is well under 1 MB.
    static constexpr uint64_t kMaxPickleBytes = uint64_t(32) << 20;
    // Elements that may be handed out beyond the distinct storages' own (tensors that share
    // a storage, such as tied weights), per archive.
    static constexpr int64_t kSpareElements = int64_t(16) << 20;

    ~TorchArchive();
    // Opens the zip archive and parses its pickle. Errors say what is wrong with the file
    // (callers add its path).
    static Result<std::unique_ptr<TorchArchive>> open(const std::string &path);

    const PyValue &root() const { return *m_root; }
    const std::string &path() const { return m_path; }
    // Materialises a tensor described in the pickle as a contiguous float32 CPU tensor, its
    // own (a tensor that is its whole float32 storage keeps the buffer read from the file).
    Result<at::Tensor> tensor(const TensorRef &ref);
    // Every tensor in a dict (values that are not tensors are skipped), in file order.
    Result<StateDict> stateDict(const PyValue &dict);

    // A record of the zip archive, as its central directory and local header describe it.
    struct Record {
        uint64_t size = 0;       // bytes (stored uncompressed)
        uint64_t dataOffset = 0; // where they start in the file
    };

private:
    TorchArchive() = default;
    const Record *record(const std::string &name) const;
    Result<at::Tensor> readStorage(const TensorRef &ref, const std::string &record);

    std::string m_path;
    std::string m_prefix;                    // the archive's root folder, with '/'
    std::map<std::string, Record> m_records; // full name, lower case -> record
    std::unique_ptr<caffe2::serialize::PyTorchStreamReader> m_reader;
    PyRef m_root;
    std::map<std::string, at::Tensor> m_storages;  // storages read for partial views
    std::map<std::string, int64_t> m_storageNumel; // every storage read so far
    int64_t m_budget = kSpareElements;             // elements that may be handed out
    int64_t m_handedOut = 0;
};

} // namespace cytosae::model
