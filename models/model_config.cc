#include "models/model_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tlt::models {
namespace {

using nlohmann::json;

Status KeyError(const std::string& key, const std::string& source, const std::string& what) {
  return InvalidArgument("config " + source + ": key '" + key + "' " + what);
}

Status GetInt(const json& j, const char* key, const std::string& source, int64_t* out,
              bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? KeyError(key, source, "is missing") : Status::OK();
  }
  if (!it->is_number_integer()) return KeyError(key, source, "must be an integer");
  *out = it->get<int64_t>();
  return Status::OK();
}

Status GetDouble(const json& j, const char* key, const std::string& source, double* out,
                 bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? KeyError(key, source, "is missing") : Status::OK();
  }
  if (!it->is_number()) return KeyError(key, source, "must be a number");
  *out = it->get<double>();
  return Status::OK();
}

Status GetBool(const json& j, const char* key, const std::string& source, bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::OK();
  if (!it->is_boolean()) return KeyError(key, source, "must be a boolean");
  *out = it->get<bool>();
  return Status::OK();
}

Status GetIds(const json& j, const char* key, const std::string& source,
              std::vector<int64_t>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::OK();
  if (it->is_number_integer()) {
    out->push_back(it->get<int64_t>());
    return Status::OK();
  }
  if (!it->is_array()) return KeyError(key, source, "must be an integer or a list of integers");
  for (const auto& v : *it) {
    if (!v.is_number_integer()) return KeyError(key, source, "must hold integers");
    out->push_back(v.get<int64_t>());
  }
  return Status::OK();
}

}  // namespace

Status ModelConfig::Validate() const {
  auto bad = [](const std::string& m) { return InvalidArgument("model config: " + m); };
  if (model_type != "llama" && model_type != "qwen2") {
    return bad("unsupported model_type '" + model_type + "' (llama, qwen2)");
  }
  if (hidden_size <= 0 || intermediate_size <= 0 || num_hidden_layers <= 0 ||
      num_attention_heads <= 0 || num_key_value_heads <= 0 || head_dim <= 0 || vocab_size <= 0) {
    return bad("sizes must be positive");
  }
  if (num_attention_heads % num_key_value_heads != 0) {
    return bad("num_attention_heads (" + std::to_string(num_attention_heads) +
               ") is not a multiple of num_key_value_heads (" +
               std::to_string(num_key_value_heads) + ")");
  }
  if (model_type == "llama" ? o_proj_bias != attention_bias : o_proj_bias) {
    return bad("o_proj_bias must equal attention_bias for llama and be false for qwen2");
  }
  if (head_dim % 2 != 0) return bad("head_dim must be even for rotary embeddings");
  if (torch_dtype != "float32" && torch_dtype != "bfloat16" && torch_dtype != "float16") {
    return bad("unsupported torch_dtype '" + torch_dtype + "'");
  }
  if (rms_norm_eps <= 0 || rope_theta <= 0) return bad("rms_norm_eps and rope_theta must be > 0");
  return Status::OK();
}

Result<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("config " + source + ": not a JSON object");
  }
  ModelConfig c;
  std::string type;
  if (auto it = j.find("model_type"); it != j.end() && it->is_string()) {
    type = it->get<std::string>();
  } else if (auto a = j.find("architectures");
             a != j.end() && a->is_array() && !a->empty() && (*a)[0].is_string()) {
    const std::string arch = (*a)[0].get<std::string>();
    if (arch.rfind("Llama", 0) == 0) type = "llama";
    if (arch.rfind("Qwen2", 0) == 0) type = "qwen2";
    if (type.empty()) return KeyError("architectures", source, "names unsupported " + arch);
  } else {
    return KeyError("model_type", source, "is missing (and no 'architectures')");
  }
  if (type != "llama" && type != "qwen2") {
    return KeyError("model_type", source, "is '" + type + "'; supported: llama, qwen2");
  }
  c.model_type = type;
  RETURN_NOT_OK(GetInt(j, "hidden_size", source, &c.hidden_size, true));
  RETURN_NOT_OK(GetInt(j, "intermediate_size", source, &c.intermediate_size, true));
  RETURN_NOT_OK(GetInt(j, "num_hidden_layers", source, &c.num_hidden_layers, true));
  RETURN_NOT_OK(GetInt(j, "num_attention_heads", source, &c.num_attention_heads, true));
  c.num_key_value_heads = c.num_attention_heads;
  RETURN_NOT_OK(GetInt(j, "num_key_value_heads", source, &c.num_key_value_heads, false));
  RETURN_NOT_OK(GetInt(j, "vocab_size", source, &c.vocab_size, true));
  if (c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  RETURN_NOT_OK(GetInt(j, "head_dim", source, &c.head_dim, false));
  RETURN_NOT_OK(GetDouble(j, "rms_norm_eps", source, &c.rms_norm_eps, true));
  RETURN_NOT_OK(GetDouble(j, "rope_theta", source, &c.rope_theta, false));
  RETURN_NOT_OK(GetInt(j, "max_position_embeddings", source, &c.max_position_embeddings, false));
  RETURN_NOT_OK(GetBool(j, "tie_word_embeddings", source, &c.tie_word_embeddings));
  RETURN_NOT_OK(GetBool(j, "attention_bias", source, &c.attention_bias));
  // HF Llama's attention_bias puts a bias on q, k, v and o; Qwen2 has one on q, k, v only.
  c.o_proj_bias = type == "llama" && c.attention_bias;
  if (type == "qwen2") c.attention_bias = true;
  if (auto it = j.find("mlp_bias"); it != j.end() && it->is_boolean() && it->get<bool>()) {
    return KeyError("mlp_bias", source, "is true; MLP biases are not supported");
  }
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (auto it = j.find(key); it != j.end() && !it->is_null()) {
      if (!it->is_string()) return KeyError(key, source, "must be a string");
      c.torch_dtype = it->get<std::string>();
      break;
    }
  }
  // transformers 5 moves rope_theta into "rope_parameters"; older ones may set "rope_scaling".
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_object()) return KeyError(key, source, "must be an object");
    std::string kind = it->value("rope_type", it->value("type", std::string("default")));
    if (kind != "default") {
      return KeyError(key, source, "rope type '" + kind + "' is not supported");
    }
    RETURN_NOT_OK(GetDouble(*it, "rope_theta", source + " (" + key + ")", &c.rope_theta, false));
  }
  if (auto it = j.find("use_sliding_window");
      it != j.end() && it->is_boolean() && it->get<bool>()) {
    return KeyError("use_sliding_window", source,
                    "is true; sliding-window attention is not supported");
  }
  RETURN_NOT_OK(GetIds(j, "bos_token_id", source, &c.bos_token_ids));
  RETURN_NOT_OK(GetIds(j, "eos_token_id", source, &c.eos_token_ids));
  Status valid = c.Validate();
  if (!valid.ok()) return valid.WithContext("config " + source);
  return c;
}

Result<ModelConfig> ReadModelConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open model config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseModelConfig(ss.str(), path);
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;
  j["architectures"] = {c.model_type == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "llama") j["attention_bias"] = c.attention_bias;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = c.torch_dtype;
  auto ids = [](const std::vector<int64_t>& v) -> json {
    if (v.empty()) return nullptr;
    if (v.size() == 1) return v[0];
    return v;
  };
  j["bos_token_id"] = ids(c.bos_token_ids);
  j["eos_token_id"] = ids(c.eos_token_ids);
  return j.dump(2) + "\n";
}

Status WriteModelConfig(const ModelConfig& config, const std::string& path) {
  std::ofstream out(path);
  if (!out) return IoError("cannot write model config " + path);
  out << ModelConfigToJson(config);
  out.close();
  if (!out) return IoError("failed writing model config " + path);
  return Status::OK();
}

}  // namespace tlt::models
