// Safetensors files and Hugging Face checkpoint directories.
//
// Format: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
// {dtype, shape, data_offsets: [begin, end)} (offsets relative to the byte after the header),
// an optional "__metadata__" string map, then the raw little-endian tensor bytes.
//
// SafetensorsFile maps a file into memory (mmap, copy-on-write private mapping) and hands out
// CPU tensors that view the mapped bytes without copying. Each such tensor holds a shared_ptr to
// the mapping, so the file stays mapped for as long as any tensor from it lives, even after the
// SafetensorsFile handle is gone. Writing into such a tensor is safe (the page is copied) and
// never changes the file. Open() validates the whole header up front: every error names the file
// and, where there is one, the tensor.
//
// A checkpoint directory holds either `model.safetensors` or `model.safetensors.index.json`
// with its shards (`weight_map`: tensor name -> shard file), as transformers' save_pretrained
// writes them. All functions are thread-compatible; a SafetensorsFile is immutable once opened
// and may be shared between threads.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "runtime/status.h"

namespace tlt::models {

// Tensor name -> tensor; names follow Hugging Face (`model.layers.0.mlp.up_proj.weight`).
using TensorMap = std::map<std::string, torch::Tensor>;
// Tensor name -> expected shape.
using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// "F32" <-> torch::kFloat32 etc. Unknown names / types give kInvalidArgument.
Result<torch::Dtype> SafetensorsDtypeToTorch(const std::string& name);
Result<std::string> TorchDtypeToSafetensors(torch::Dtype dtype);

class SafetensorsFile : public std::enable_shared_from_this<SafetensorsFile> {
 public:
  // Maps and validates `path`: header length within the file, JSON well formed, known dtypes,
  // offsets inside the data area and consistent with shape x element size.
  static Result<std::shared_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;
  bool Contains(const std::string& name) const { return entries_.count(name) > 0; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // A CPU tensor that views the mapped bytes (copied only if misaligned for its dtype).
  Result<torch::Tensor> Get(const std::string& name) const;
  // Every tensor in the file.
  Result<TensorMap> GetAll() const;

 private:
  struct Entry {
    torch::Dtype dtype;
    std::vector<int64_t> shape;
    int64_t begin = 0;  // absolute byte offsets into the mapping
    int64_t end = 0;
  };
  SafetensorsFile() = default;

  std::string path_;
  void* mapping_ = nullptr;
  int64_t size_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (any device; made contiguous and copied to CPU) to one file.
Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                        const std::map<std::string, std::string>& metadata = {});

// All tensors of a checkpoint directory, and the file each came from (for error messages).
struct CheckpointTensors {
  TensorMap tensors;
  std::map<std::string, std::string> files;  // tensor name -> path
};
// Reads `dir`/model.safetensors, or the shards listed in `dir`/model.safetensors.index.json.
Result<CheckpointTensors> ReadCheckpointTensors(const std::string& dir);
// Writes `tensors` into `dir` (created if missing). With max_shard_bytes > 0 and more bytes than
// that, writes shards `model-0000i-of-0000n.safetensors` plus the index; else model.safetensors.
Status WriteCheckpointTensors(const std::string& dir, const TensorMap& tensors,
                              int64_t max_shard_bytes = 0);

// Checks loaded tensors against the expected names and shapes. Errors name the tensor and its
// file: a missing tensor (unless listed in `optional`), an unexpected one, a wrong shape.
Status CheckTensorShapes(const CheckpointTensors& loaded, const ShapeMap& expected,
                         const std::set<std::string>& optional = {});

}  // namespace tlt::models
