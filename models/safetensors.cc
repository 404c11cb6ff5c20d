#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tlt::models {
namespace {

using nlohmann::json;
constexpr int64_t kMaxHeaderBytes = 100 * 1024 * 1024;  // as the reference implementation

Status Malformed(const std::string& m) { return Status(ErrorCode::kMalformed, m); }

struct DtypeName {
  const char* name;
  torch::Dtype dtype;
};
const DtypeName kDtypes[] = {
    {"F64", torch::kFloat64},   {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},   {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},     {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

}  // namespace

Result<torch::Dtype> SafetensorsDtypeToTorch(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return InvalidArgument("unsupported safetensors dtype '" + name + "'");
}

Result<std::string> TorchDtypeToSafetensors(torch::Dtype dtype) {
  for (const auto& d : kDtypes) {
    if (dtype == d.dtype) return std::string(d.name);
  }
  return InvalidArgument(std::string("dtype ") + c10::toString(dtype) +
                         " cannot be stored in safetensors");
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return NotFound("cannot open safetensors file " + path + ": " + strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return IoError("cannot stat " + path);
  }
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = st.st_size;
  if (file->size_ < 8) {
    ::close(fd);
    return Malformed(path + ": truncated safetensors file (" + std::to_string(file->size_) +
                     " bytes, no header length)");
  }
  void* p = mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) return IoError("cannot mmap " + path + ": " + strerror(errno));
  file->mapping_ = p;
  const auto* bytes = static_cast<const uint8_t*>(p);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes) ||
      static_cast<int64_t>(header_len) > file->size_ - 8) {
    return Malformed(path + ": header length " + std::to_string(header_len) +
                     " out of range (file is " + std::to_string(file->size_) + " bytes)");
  }
  const int64_t data_start = 8 + static_cast<int64_t>(header_len);
  json header = json::parse(bytes + 8, bytes + data_start, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return Malformed(path + ": header is not a JSON object");
  }
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) return Malformed(path + ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (m.value().is_string()) file->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets") || !v["dtype"].is_string() || !v["shape"].is_array() ||
        !v["data_offsets"].is_array() || v["data_offsets"].size() != 2) {
      return Malformed(where + ": entry needs dtype, shape and data_offsets [begin, end]");
    }
    Entry e;
    auto dtype = SafetensorsDtypeToTorch(v["dtype"].get<std::string>());
    if (!dtype.ok()) return dtype.status().WithContext(where);
    e.dtype = *dtype;
    int64_t numel = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) return Malformed(where + ": bad shape");
      e.shape.push_back(d.get<int64_t>());
      numel *= e.shape.back();
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      return Malformed(where + ": data_offsets must be non-negative integers");
    }
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    const uint64_t data_size = static_cast<uint64_t>(file->size_ - data_start);
    if (b > en || en > data_size) {
      return Malformed(where + ": data offsets [" + std::to_string(b) + ", " + std::to_string(en) +
                       ") beyond the data area of " + std::to_string(data_size) +
                       " bytes (truncated file?)");
    }
    const int64_t expect = numel * static_cast<int64_t>(c10::elementSize(e.dtype));
    if (static_cast<int64_t>(en - b) != expect) {
      return Malformed(where + ": data offsets span " + std::to_string(en - b) +
                       " bytes but shape and dtype need " + std::to_string(expect));
    }
    e.begin = data_start + static_cast<int64_t>(b);
    e.end = data_start + static_cast<int64_t>(en);
    file->entries_.emplace(name, std::move(e));
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

Result<torch::Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return NotFound(path_ + ": no tensor '" + name + "'");
  const Entry& e = it->second;
  auto* data = static_cast<uint8_t*>(mapping_) + e.begin;
  auto options = torch::TensorOptions().dtype(e.dtype).device(torch::kCPU);
  if (e.end == e.begin) return torch::empty(e.shape, options);
  std::shared_ptr<const SafetensorsFile> keep = shared_from_this();
  torch::Tensor t = torch::from_blob(
      data, e.shape, [keep](void*) mutable { keep.reset(); }, options);
  if (reinterpret_cast<uintptr_t>(data) % c10::elementSize(e.dtype) != 0) t = t.clone();
  return t;
}

Result<TensorMap> SafetensorsFile::GetAll() const {
  TensorMap out;
  for (const auto& [name, e] : entries_) {
    ASSIGN_OR_RETURN(out[name], Get(name));
  }
  return out;
}

Status WriteSafetensors(const std::string& path, const TensorMap& tensors,
                        const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> cpu;
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    auto dtype = TorchDtypeToSafetensors(t.scalar_type());
    if (!dtype.ok()) return dtype.status().WithContext(path + ": tensor '" + name + "'");
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    const int64_t n = c.numel() * static_cast<int64_t>(c.element_size());
    header[name] = {
        {"dtype", *dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    cpu.push_back(std::move(c));
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return IoError("cannot create " + path + ": " + strerror(errno));
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, n, f) == n;
  for (const auto& c : cpu) {
    const size_t bytes = c.numel() * c.element_size();
    if (ok && bytes > 0) ok = std::fwrite(c.data_ptr(), 1, bytes, f) == bytes;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return IoError("failed writing " + path);
  return Status::OK();
}

Result<CheckpointTensors> ReadCheckpointTensors(const std::string& dir) {
  namespace fs = std::filesystem;
  CheckpointTensors out;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    std::ifstream in(index);
    std::stringstream ss;
    ss << in.rdbuf();
    json j = json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return Malformed(index.string() + ": no weight_map object");
    }
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) return Malformed(index.string() + ": bad weight_map entry");
      const std::string file = (fs::path(dir) / it.value().get<std::string>()).string();
      weight_map[it.key()] = file;
      if (std::find(shard_files.begin(), shard_files.end(), file) == shard_files.end()) {
        shard_files.push_back(file);
      }
    }
  } else if (fs::exists(single)) {
    shard_files.push_back(single.string());
  } else {
    return NotFound("no model.safetensors or model.safetensors.index.json in " + dir);
  }
  for (const auto& path : shard_files) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    for (const auto& name : file->names()) {
      if (out.tensors.count(name)) {
        return Malformed(path + ": tensor '" + name + "' also in " + out.files[name]);
      }
      ASSIGN_OR_RETURN(out.tensors[name], file->Get(name));
      out.files[name] = path;
    }
  }
  for (const auto& [name, file] : weight_map) {
    auto it = out.files.find(name);
    if (it == out.files.end()) {
      return NotFound(file + ": missing tensor '" + name + "' (listed in " + index.string() + ")");
    }
    if (it->second != file) {
      return Malformed(index.string() + ": tensor '" + name + "' is in " + it->second +
                       ", not in " + file);
    }
  }
  return out;
}

Status WriteCheckpointTensors(const std::string& dir, const TensorMap& tensors,
                              int64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError("cannot create directory " + dir + ": " + ec.message());
  int64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel() * t.element_size();
  if (max_shard_bytes <= 0 || total <= max_shard_bytes) {
    fs::remove(fs::path(dir) / "model.safetensors.index.json", ec);
    return WriteSafetensors((fs::path(dir) / "model.safetensors").string(), tensors,
                            {{"format", "pt"}});
  }
  std::vector<TensorMap> shards(1);
  int64_t in_shard = 0;
  for (const auto& [name, t] : tensors) {
    const int64_t bytes = t.numel() * t.element_size();
    if (in_shard > 0 && in_shard + bytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back()[name] = t;
    in_shard += bytes;
  }
  json weight_map = json::object();
  const size_t n = shards.size();
  for (size_t i = 0; i < n; ++i) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", i + 1, n);
    RETURN_NOT_OK(WriteSafetensors((fs::path(dir) / file).string(), shards[i], {{"format", "pt"}}));
    for (const auto& [name, t] : shards[i]) weight_map[name] = file;
  }
  fs::remove(fs::path(dir) / "model.safetensors", ec);
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::ofstream out(fs::path(dir) / "model.safetensors.index.json");
  out << index.dump(2) << "\n";
  out.close();
  if (!out) return IoError("failed writing index in " + dir);
  return Status::OK();
}

Status CheckTensorShapes(const CheckpointTensors& loaded, const ShapeMap& expected,
                         const std::set<std::string>& optional) {
  auto file_of = [&](const std::string& name) {
    auto it = loaded.files.find(name);
    return it == loaded.files.end() ? std::string("<memory>") : it->second;
  };
  for (const auto& [name, shape] : expected) {
    auto it = loaded.tensors.find(name);
    if (it == loaded.tensors.end()) {
      if (optional.count(name)) continue;
      return NotFound("checkpoint is missing tensor '" + name + "'" +
                      (loaded.files.empty() ? ""
                                            : " (read " + loaded.files.begin()->second +
                                                  (loaded.files.size() > 1 ? ", ..." : "") + ")"));
    }
    if (it->second.sizes().vec() != shape) {
      return InvalidArgument(file_of(name) + ": tensor '" + name + "' has shape " +
                             c10::str(it->second.sizes()) + ", expected " +
                             c10::str(c10::IntArrayRef(shape)));
    }
  }
  for (const auto& [name, t] : loaded.tensors) {
    if (!expected.count(name)) {
      return InvalidArgument(file_of(name) + ": unexpected tensor '" + name + "'");
    }
  }
  return Status::OK();
}

}  // namespace tlt::models
