#pragma once

// Writes checkpoints in the format of torch.save (PyTorch >= 1.6 zip archives), without
// LibTorch or Python, so trained models can be saved exactly like the published DinoBloom
// and CytoSAE files and loaded by `torch.load` (1.13 and 2.x), by LibTorch's
// PyTorchStreamReader and by our own reader (TorchCheckpoint.h / Pickle.h).
//
// What to write is a tree of immutable PickleNode values built with the py:: functions,
// e.g. a CytoSAE file:
//
//     auto cfg = py::object("src.sae_training.config", "ViTSAERunnerConfig",
//                           {{"d_in", py::integer(768)}, {"device", py::device("cuda")},
//                            {"dtype", py::global("torch", "float32")}, ...});
//     auto sd = py::orderedDict({{"W_enc", py::tensorF32({768, 49152}, wEnc)}, ...});
//     Status s = writeTorchSave("out/final_sae.pt", py::dict({{"cfg", cfg}, {"state_dict", sd}}));
//
// The pickle is protocol 2 and uses the opcodes and layout Python's pickler uses for these
// objects (GLOBAL, BINPUT/BINGET memo, MARK/SETITEMS batches of 1000, NEWOBJ+BUILD for
// plain class instances, _rebuild_tensor_v2 + BINPERSID for tensors). As in Python, values
// are memoized by identity: passing the same node twice writes it once and refers back to
// it (one shared object after loading; a tensor node used twice is one tensor, stored
// once); equal but distinct nodes are written twice. GLOBALs are memoized by name.
//
// The archive is byte-for-byte what torch.save (1.13, via LibTorch's miniz writer) produces
// for the same objects: root folder = file name without directory and extension, records
// data.pkl, data/<key> (one per tensor, keys "0", "1", ... in pickle order, written in
// sorted order), version ("3\n"); stored entries with data descriptors, each record's data
// aligned to 64 bytes by an "FB" extra field, ZIP64 end records. torch 2.x would add
// `byteorder` and `.data/serialization_id` records, which readers treat as optional.
//
// Thread safety: nodes are immutable and may be shared between threads; writeTorchSave is
// reentrant. No exception crosses this API.

#include "common/Result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cytosae::model {

struct PickleNode;
using PickleNodePtr = std::shared_ptr<const PickleNode>;
using PickleEntries = std::vector<std::pair<PickleNodePtr, PickleNodePtr>>; // any keys
using PickleFields = std::vector<std::pair<std::string, PickleNodePtr>>;    // string keys

struct PickleNode {
    enum class Kind {
        None,
        Bool,
        Int,
        Float,
        String,
        Tuple,
        List,
        Dict,
        OrderedDict,
        Object,
        Global,
        Device,
        TensorF32
    };
    Kind kind = Kind::None;
    bool boolValue = false;
    int64_t intValue = 0; // Int; Device: index, -1 for none
    double floatValue = 0.0;
    std::string text; // String (UTF-8); Global, Object: module; Device: type
    std::string name; // Global: attribute name; Object: class name
    std::vector<PickleNodePtr> items;
    PickleEntries entries;      // Dict, OrderedDict: items in order; Object: its fields
    PickleNodePtr state;        // OrderedDict: instance attributes set by BUILD, or null
    std::vector<int64_t> shape; // TensorF32 (C-contiguous, row-major)
    std::vector<float> data;    // TensorF32 values, shape product of them
};

// Builders. Invalid input (bad UTF-8, a tensor whose data does not match its shape, ...)
// is not checked here but reported by writeTorchSave.
namespace py {
PickleNodePtr none();
PickleNodePtr boolean(bool value);
PickleNodePtr integer(int64_t value);
PickleNodePtr real(double value);
PickleNodePtr text(std::string utf8);
PickleNodePtr tuple(std::vector<PickleNodePtr> items);
PickleNodePtr list(std::vector<PickleNodePtr> items);
// A plain dict. (An empty one: py::dict(PickleFields{}).)
PickleNodePtr dict(PickleFields entries);
PickleNodePtr dict(PickleEntries entries);
// collections.OrderedDict, as state_dict() returns. `state` is the instance attribute dict
// restored by BUILD: for a module's state_dict, a dict {'_metadata': OrderedDict(prefix ->
// {'version': n})}; null for none (a plain OrderedDict).
PickleNodePtr orderedDict(PickleFields entries, PickleNodePtr state = nullptr);
PickleNodePtr orderedDict(PickleEntries entries, PickleNodePtr state = nullptr);
// An instance of a plain Python class (or dataclass) `module.className` whose __dict__ is
// `fields`, written as pickle protocol 2 saves it: GLOBAL, EMPTY_TUPLE, NEWOBJ, BUILD.
// Loading it in Python needs that class importable (or an Unpickler.find_class override).
PickleNodePtr object(std::string module, std::string className, PickleFields fields);
// A reference to a module attribute, e.g. global("torch", "float32") for torch.float32.
PickleNodePtr global(std::string module, std::string name);
// torch.device(type) or, with index >= 0, torch.device(type, index).
PickleNodePtr device(std::string type, int index = -1);
// A float32 CPU tensor, C-contiguous, requires_grad=False, with its own storage. The values
// (product of shape of them, none for an empty shape product) are copied or moved in.
PickleNodePtr tensorF32(std::vector<int64_t> shape, const float *data);
PickleNodePtr tensorF32(std::vector<int64_t> shape, std::vector<float> data);
} // namespace py

// Writes `root` as torch.save(root, path) would. The file is written under a temporary name
// in the same folder, flushed to disk and renamed over `path` only when complete, so a
// failure or crash never leaves a partial checkpoint under `path` (an existing file there
// stays as it was). Errors start with the path.
Status writeTorchSave(const std::string &path, const PickleNodePtr &root);

} // namespace cytosae::model
