#pragma once

// Reads torch.save zip archives without Python: the pickle through our data-only
// interpreter (Pickle.h), tensor bytes through LibTorch's zip reader. Internal to core/model
// (it exposes at::Tensor); other layers use Engine.h.

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
    ~TorchArchive();
    // Opens the zip archive and parses its pickle. Errors say what is wrong with the file.
    static Result<std::unique_ptr<TorchArchive>> open(const std::string &path);

    const PyValue &root() const { return *m_root; }
    const std::string &path() const { return m_path; }
    // Materialises a tensor described in the pickle as a contiguous float32 CPU tensor.
    Result<at::Tensor> tensor(const TensorRef &ref);
    // Every tensor in a dict (values that are not tensors are skipped), in file order.
    Result<StateDict> stateDict(const PyValue &dict);

private:
    TorchArchive() = default;
    std::string m_path;
    uint64_t m_fileSize = 0;
    std::unique_ptr<caffe2::serialize::PyTorchStreamReader> m_reader;
    PyRef m_root;
    std::map<std::string, at::Tensor> m_storages; // one read per storage record
};

} // namespace cytosae::model
