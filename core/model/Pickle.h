#pragma once

// A data-only interpreter for Python pickles (protocols 2-5) as written by torch.save.
//
// It never imports, resolves or calls anything: a GLOBAL becomes a name, REDUCE/NEWOBJ
// become opaque objects that keep their arguments and BUILD state. The few callables that
// torch.save writes (_rebuild_tensor_v2, OrderedDict, storages) are recognised by name and
// turned into plain values. Only the GLOBAL names of an allow-list (by default the names the
// published checkpoints use, checkpointGlobals()) may occur anywhere in the stream: any other
// name is refused where it appears, called or not. Every length, index and depth read from
// the stream is bounded, and so is the memory of the values built (PickleLimits::maxBytes),
// so a hostile file ends in an error message, never in a crash or a huge allocation.
// Thread safety: parsePickle is reentrant; values are immutable once returned.

#include "common/Result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cytosae::model {

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

enum class ScalarType { Float32, Float64, Float16, BFloat16, Int64, Int32, Int16, Int8, UInt8, Bool };
int scalarTypeSize(ScalarType type);
const char *scalarTypeName(ScalarType type);

// A tensor described by the pickle: where its bytes live in the archive, and its view.
struct TensorRef {
    std::string storageKey; // record "data/<key>" in the zip archive
    ScalarType dtype = ScalarType::Float32;
    int64_t storageNumel = 0;
    int64_t storageOffset = 0;
    std::vector<int64_t> sizes;
    std::vector<int64_t> strides;
    std::string location; // "cpu", "cuda:0", ... (informational only)
};

struct PyValue {
    enum class Kind { None, Bool, Int, Float, String, Bytes, Tuple, List, Dict, Global, Object, Storage, Tensor, Mark };
    Kind kind = Kind::None;
    bool boolValue = false;
    int64_t intValue = 0;
    double floatValue = 0.0;
    std::string text;                          // String, Bytes; Global/Object: "module.name"
    std::vector<PyRef> items;                  // Tuple, List; Object: constructor args
    std::vector<std::pair<PyRef, PyRef>> dict; // Dict (insertion order); Object: BUILD state if a dict
    PyRef state;                               // Object: BUILD state when not a dict
    TensorRef tensor;                          // Tensor, Storage

    // Bookkeeping that keeps hostile pickles finite (see Pickle.cpp): nesting depth, and
    // the creation order used to refuse reference cycles.
    uint32_t depth = 0;
    uint64_t serial = 0;
    uint64_t minMutableSerial = UINT64_MAX;

    // Dict lookup by string key; nullptr if absent or not a dict/object with dict state.
    const PyValue *get(const std::string &key) const;
    bool isString() const { return kind == Kind::String; }
    // A short human description ("dict with 4 entries", "str 'abc'") for error messages.
    std::string describe() const;
};

// The GLOBAL names ("module.name") that torch.save writes for the published DinoBloom-B
// (.pth, a state dict) and CytoSAE (.pt, {cfg: ViTSAERunnerConfig, state_dict}) files, and
// that our writer (ModelFiles.h) writes for them: collections.OrderedDict,
// torch._utils._rebuild_tensor_v2, torch.FloatStorage, torch.device, torch.float32 and
// src.sae_training.config.ViTSAERunnerConfig; plus the storage classes of the other float
// types the reader converts (torch.DoubleStorage, torch.HalfStorage, torch.BFloat16Storage),
// which are type tags like FloatStorage. Nothing else.
const std::vector<std::string> &checkpointGlobals();

struct PickleLimits {
    size_t maxDepth = 1000;          // nesting of containers / mark stack
    size_t maxMemo = 10'000'000;     // memo slots
    size_t maxStringBytes = 1 << 26; // one string or bytes value
    size_t maxItems = 50'000'000;    // total values created
    // Memory the values may take, estimated (values, strings, container slots, memo, copies
    // made by BUILD/NEWOBJ/REDUCE): a small pickle cannot make the reader allocate gigabytes.
    // A published checkpoint's pickle needs well under 1 MB.
    size_t maxBytes = size_t(96) << 20;
    // The only names a GLOBAL or STACK_GLOBAL may have, exactly "module.name" (the name part
    // without dots). Any other name is refused with a message that names it.
    std::vector<std::string> allowedGlobals = checkpointGlobals();
};

// Parses a complete pickle. Returns the top-level object or a message
// "<reason> at byte <offset>[: <explanation>]" (the caller adds the file name).
Result<PyRef> parsePickle(const uint8_t *data, size_t size, const PickleLimits &limits = {});

} // namespace cytosae::model
