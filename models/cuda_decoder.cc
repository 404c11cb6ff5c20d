// CudaDecoder (cuda_decoder.h): fused kernels + CUDA graphs. Compiled only with a CUDA LibTorch.
#include "models/cuda_decoder.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "gpu/decode_kernels.h"
#include "models/cuda_decode_step.h"
#include "models/cuda_decoder_weights.h"

namespace tlt::models {
namespace {

// A row-count bucket: its static buffers (the step's inputs and outputs) and graph.
struct Bucket : StepBuffers {
  std::unique_ptr<at::cuda::CUDAGraph> graph;
};

class CudaDecoderImpl : public CudaDecoder {
 public:
  CudaDecoderImpl(std::function<DecoderWeights()> source, const ModelConfig& config, KvCache* cache,
                  const CudaDecoderOptions& options, c10::Device weights_device)
      : source_(std::move(source)),
        cache_(cache),
        options_(options),
        config_(config),
        exec_device_(weights_device),
        side_stream_(c10::cuda::getStreamFromPool(false, weights_device.index())) {
    c10::cuda::CUDAGuard guard(exec_device_);
    const KvCacheOptions& c = cache_->options();
    dtype_ = c.dtype;
    device_ = c.device;
    const int64_t max_rows = options_.max_rows > 0 ? options_.max_rows : c.max_slots;
    for (int64_t s = 1; s < max_rows; s *= 2) bucket_sizes_.push_back(s);
    bucket_sizes_.push_back(max_rows);
    const int64_t max_bucket = max_rows;
    pinned_in_ = torch::empty({kInputRows * max_bucket},
                              torch::TensorOptions().dtype(torch::kInt64).pinned_memory(true));
    pinned_out_ = torch::empty({2 * max_bucket},
                               torch::TensorOptions().dtype(torch::kFloat64).pinned_memory(true));
    // Zeros that the attention kernel's chunk tickets start from (and leave behind).
    attention_counters_ =
        torch::zeros({TltDecodeAttentionCounterCount(max_bucket, config_.num_attention_heads)},
                     torch::TensorOptions().dtype(torch::kInt32).device(device_));
    // ForwardDeviceRows' padding columns (slot -1: skipped), made here so that no caller's
    // capture ever owns them.
    device_row_padding_ = torch::zeros({kDeviceRowFields, max_bucket},
                                       torch::TensorOptions().dtype(torch::kInt64).device(device_));
    device_row_padding_[kSlot].fill_(-1);
    device_row_padding_[kTreeBase].fill_(-1);
    Build();
    step_ = std::make_unique<DecodeStep>(w_, config_, cache_, options_, dtype_, device_,
                                         attention_counters_);
    TLT_CUDA_CHECK(cudaEventCreateWithFlags(&input_copied_, cudaEventDisableTiming));
    if (options_.time_steps) {
      TLT_CUDA_CHECK(cudaEventCreate(&step_start_));
      TLT_CUDA_CHECK(cudaEventCreate(&step_end_));
    }
  }

  ~CudaDecoderImpl() override {
    Invalidate();
    if (input_copied_ != nullptr) cudaEventDestroy(input_copied_);
    if (step_start_ != nullptr) cudaEventDestroy(step_start_);
    if (step_end_ != nullptr) cudaEventDestroy(step_end_);
  }

  double device_seconds() const override { return device_seconds_; }
  int64_t timed_steps() const override { return timed_steps_; }

  Result<DecodeOutput> Decode(const std::vector<DecodeRow>& rows, bool want_hidden,
                              bool hidden_on_device) override {
    try {
      c10::cuda::CUDAGuard guard(exec_device_);
      torch::NoGradGuard no_grad;
      const int64_t B = static_cast<int64_t>(rows.size());
      Bucket* bk = nullptr;
      RETURN_NOT_OK(Run(rows, &bk));
      bool all_greedy = true, filter = false;
      for (const DecodeRow& r : rows) {
        all_greedy = all_greedy && r.params.temperature <= 0;
        filter = filter || (r.params.top_k > 0 && r.params.top_k < config_.vocab_size) ||
                 r.params.top_p < 1.0;
      }
      torch::Tensor packed = bk->packed;  // undefined for tree rows (see DecodeStep::Head)
      if (all_greedy && !packed.defined()) {
        packed = torch::stack({bk->logits.argmax(-1).to(torch::kFloat64),
                               torch::zeros({bk->size}, bk->logits.options().dtype(torch::kFloat64))});
      }
      if (!all_greedy) {
        torch::Tensor f = bk->input.narrow(0, kTemperature, 3).view(torch::kFloat64);
        SamplingTensors t{f[0], bk->input[kTopK], f[1], f[2]};
        SampledTensors s = SampleOnDevice(bk->logits, t, filter);
        packed = torch::stack({s.tokens.to(torch::kFloat64), s.logprobs.to(torch::kFloat64)});
      }
      torch::Tensor out = pinned_out_.narrow(0, 0, 2 * bk->size).view({2, bk->size});
      out.copy_(packed, /*non_blocking=*/true);
      TLT_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream().stream()));
      if (step_start_ != nullptr && timed_) {
        float ms = 0;
        TLT_CUDA_CHECK(cudaEventElapsedTime(&ms, step_start_, step_end_));
        device_seconds_ += ms / 1e3;
        ++timed_steps_;
      }
      const double* data = out.data_ptr<double>();
      DecodeOutput result;
      for (int64_t b = 0; b < B; ++b) {
        result.tokens.push_back(static_cast<int64_t>(data[b]));
        result.logprobs.push_back(static_cast<float>(data[bk->size + b]));
      }
      if (want_hidden) {
        torch::Tensor h = bk->hidden.narrow(0, 0, B);
        result.hidden = hidden_on_device ? h.clone() : h.cpu();
      }
      return result;
    } catch (const c10::Error& e) {
      return Internal(std::string("cuda decoder: ") + e.what_without_backtrace());
    }
  }

  Result<torch::Tensor> DecodeLogits(const std::vector<DecodeRow>& rows) override {
    try {
      c10::cuda::CUDAGuard guard(exec_device_);
      torch::NoGradGuard no_grad;
      Bucket* bk = nullptr;
      RETURN_NOT_OK(Run(rows, &bk));
      torch::Tensor logits = bk->logits.narrow(0, 0, static_cast<int64_t>(rows.size())).clone();
      // The next call rewrites the pinned input buffer: the copy from it must have run.
      TLT_CUDA_CHECK(cudaStreamSynchronize(c10::cuda::getCurrentCUDAStream().stream()));
      return logits;
    } catch (const c10::Error& e) {
      return Internal(std::string("cuda decoder: ") + e.what_without_backtrace());
    }
  }

  Result<StepTensors> Forward(const std::vector<DecodeRow>& rows) override {
    return Forward(rows, torch::Tensor());
  }

  Result<StepTensors> Forward(const std::vector<DecodeRow>& rows,
                              const torch::Tensor& hidden_in) override {
    if (w_.fc_w.defined() != hidden_in.defined()) {
      return InvalidArgument(w_.fc_w.defined()
                                 ? "cuda decoder: this model's input projection needs hidden_in"
                                 : "cuda decoder: hidden_in given but the model has no input "
                                   "projection");
    }
    if (hidden_in.defined() &&
        (hidden_in.dim() != 2 || hidden_in.size(0) != static_cast<int64_t>(rows.size()) ||
         hidden_in.size(1) != config_.hidden_size || hidden_in.device() != w_.embed.device())) {
      return InvalidArgument("cuda decoder: hidden_in must be [rows, hidden] on the device");
    }
    try {
      c10::cuda::CUDAGuard guard(exec_device_);
      torch::NoGradGuard no_grad;
      Bucket* bk = nullptr;
      RETURN_NOT_OK(Run(rows, &bk, hidden_in));
      const int64_t B = static_cast<int64_t>(rows.size());
      return StepTensors{bk->logits.narrow(0, 0, B), bk->hidden.narrow(0, 0, B)};
    } catch (const c10::Error& e) {
      return Internal(std::string("cuda decoder: ") + e.what_without_backtrace());
    }
  }

  Result<StepTensors> ForwardDeviceRows(const torch::Tensor& rows, const torch::Tensor& hidden_in,
                                        const torch::Tensor& gather) override {
    if (rows.dim() != 2 || rows.size(0) != kDeviceRowFields ||
        rows.scalar_type() != torch::kInt64 || rows.device() != w_.embed.device() ||
        rows.size(1) < 1 || rows.size(1) > bucket_sizes_.back()) {
      return InvalidArgument("cuda decoder: device rows must be int64 [" +
                             std::to_string(kDeviceRowFields) + ", 1.." +
                             std::to_string(bucket_sizes_.back()) + "] on the device");
    }
    const int64_t B = rows.size(1);
    if (w_.fc_w.defined() != hidden_in.defined() ||
        (hidden_in.defined() &&
         (hidden_in.dim() != 2 || hidden_in.size(0) != B ||
          hidden_in.size(1) != config_.hidden_size || hidden_in.device() != w_.embed.device()) &&
         !gather.defined())) {
      return InvalidArgument(
          "cuda decoder: hidden_in must be [rows, hidden] on the device exactly when the model "
          "has an input projection");
    }
    if (gather.defined() &&
        (!hidden_in.defined() || hidden_in.dim() != 2 || hidden_in.size(0) < 1 ||
         hidden_in.size(1) != config_.hidden_size || hidden_in.device() != w_.embed.device() ||
         !hidden_in.is_contiguous() || hidden_in.scalar_type() != dtype_ || gather.dim() != 1 ||
         gather.size(0) != B || gather.scalar_type() != torch::kInt64 ||
         gather.device() != w_.embed.device() || !gather.is_contiguous())) {
      return InvalidArgument(
          "cuda decoder: a gather needs int64 [rows] indices and a contiguous [m, hidden] "
          "hidden_in of the model's dtype on the device");
    }
    try {
      c10::cuda::CUDAGuard guard(exec_device_);
      torch::NoGradGuard no_grad;
      if (cache_->released()) return Unavailable("cuda decoder: KV cache is released");
      RETURN_NOT_OK(CheckWeights());
      // Inside a caller's capture: record the kernels there, with buffers of their own.
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      TLT_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream().stream(), &capture));
      const bool direct = capture != cudaStreamCaptureStatusNone;
      Bucket& bk = BucketFor(B, /*tree=*/true, direct ? &captured_buckets_ : &buckets_);
      torch::Tensor fields = bk.input.narrow(0, 0, kDeviceRowFields);
      fields.narrow(1, 0, B).copy_(rows);
      if (B < bk.size) {  // padding rows: slot -1 (skipped), no tree
        fields.narrow(1, B, bk.size - B).copy_(device_row_padding_.narrow(1, 0, bk.size - B));
      }
      timed_ = false;
      if (gather.defined() && direct) {  // the input kernel reads the caller's buffers in place
        bk.hidden_source = hidden_in;
        bk.hidden_gather = gather;
        bk.hidden_rows = B;
        try {
          step_->Compute(bk);
        } catch (...) {
          bk.hidden_source = bk.hidden_gather = torch::Tensor();
          throw;
        }
        bk.hidden_source = bk.hidden_gather = torch::Tensor();
      } else {
        Launch(bk, B, gather.defined() ? hidden_in.index_select(0, gather) : hidden_in, direct);
      }
      return StepTensors{bk.logits.narrow(0, 0, B), bk.hidden.narrow(0, 0, B)};
    } catch (const c10::Error& e) {
      return Internal(std::string("cuda decoder: ") + e.what_without_backtrace());
    }
  }

  Status Refresh() override {
    try {
      c10::cuda::CUDAGuard guard(exec_device_);
      torch::NoGradGuard no_grad;
      if (cache_->released()) return Unavailable("cuda decoder: KV cache is released");
      RETURN_NOT_OK(CheckWeights());
      if (cache_->keys(0).data_ptr() != cache_pointer_) {
        Invalidate();
        cache_pointer_ = cache_->keys(0).data_ptr();
      }
      return Status::OK();
    } catch (const c10::Error& e) {
      return Internal(std::string("cuda decoder: ") + e.what_without_backtrace());
    }
  }

  int64_t epoch() const override { return epoch_; }

  void Invalidate() override {
    ++epoch_;
    captured_buckets_.clear();
    buckets_.clear();
    pool_ = at::cuda::graph_pool_handle();
    cache_pointer_ = nullptr;
  }

  int64_t max_rows() const override { return bucket_sizes_.back(); }

  int64_t num_graphs() const override {
    int64_t n = 0;
    for (const auto& [size, bk] : buckets_) n += bk.graph ? 1 : 0;
    return n;
  }

 private:
  // Checks weights and cache, stages the inputs, runs (or replays) the step into *bucket.
  Status Run(const std::vector<DecodeRow>& rows, Bucket** bucket,
             const torch::Tensor& hidden_in = torch::Tensor()) {
    if (w_.fc_w.defined() && !hidden_in.defined()) {
      return InvalidArgument("cuda decoder: this model's input projection needs hidden_in");
    }
    const int64_t B = static_cast<int64_t>(rows.size());
    if (B < 1 || B > bucket_sizes_.back()) {
      return InvalidArgument("cuda decoder: " + std::to_string(B) + " rows");
    }
    if (cache_->released()) return Unavailable("cuda decoder: KV cache is released");
    const int64_t max_length = cache_->options().max_length;
    bool tree = false;
    for (const DecodeRow& r : rows) {
      if (r.token < 0 || r.token >= w_.embed.size(0)) {
        return InvalidArgument("cuda decoder: token " + std::to_string(r.token) +
                               " outside the vocabulary [0, " +
                               std::to_string(w_.embed.size(0)) + ")");
      }
      if (r.slot < 0 || r.slot >= cache_->options().max_slots || r.position < 0 ||
          r.position >= max_length || r.rotary_position >= max_length ||
          (r.tree_base >= 0 && (r.tree_base > r.position || r.position - r.tree_base > 63))) {
        return InvalidArgument("cuda decoder: row (slot " + std::to_string(r.slot) + ", position " +
                               std::to_string(r.position) + ", tree base " +
                               std::to_string(r.tree_base) + ") out of range");
      }
      // Own rotary positions also take the tree path (the fused attention rotates by position).
      tree = tree || r.tree_base >= 0 || r.rotary_position >= 0;
    }
    if (!tree) {  // plain rows write and read their slot's keys in one kernel: one row a slot
      std::vector<int64_t> seen;
      for (const DecodeRow& r : rows) seen.push_back(r.slot);
      std::sort(seen.begin(), seen.end());
      if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
        return InvalidArgument(
            "cuda decoder: several rows of one slot need tree rows "
            "(DecodeRow::tree_base)");
      }
    }
    RETURN_NOT_OK(CheckWeights());
    Bucket& bk = BucketFor(B, tree);
    const int64_t size = bk.size;
    // The previous call's copy from the pinned buffer may still be queued (Forward() does not
    // wait for the device): wait for it before overwriting the buffer.
    TLT_CUDA_CHECK(cudaEventSynchronize(input_copied_));
    int64_t* in = pinned_in_.data_ptr<int64_t>();
    auto put_double = [](int64_t* dst, double v) { std::memcpy(dst, &v, sizeof(v)); };
    for (int64_t b = 0; b < size; ++b) {
      const bool real = b < B;
      in[kToken * size + b] = real ? rows[b].token : 0;
      in[kPosition * size + b] = real ? rows[b].position : 0;
      in[kSlot * size + b] = real ? rows[b].slot : -1;
      in[kTopK * size + b] = real ? rows[b].params.top_k : 0;
      put_double(in + kTemperature * size + b, real ? rows[b].params.temperature : 0.0);
      put_double(in + kTopP * size + b, real ? rows[b].params.top_p : 1.0);
      put_double(in + kUniform * size + b, real ? rows[b].uniform : 0.0);
      const bool own_rotary = real && rows[b].rotary_position >= 0;
      in[kRotaryPosition * size + b] =
          own_rotary ? rows[b].rotary_position : in[kPosition * size + b];
      in[kTreeBase * size + b] = real ? rows[b].tree_base : -1;
      in[kTreeMask * size + b] = real ? static_cast<int64_t>(rows[b].tree_mask) : 0;
    }
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    timed_ = step_start_ != nullptr && bk.graph != nullptr;  // not the eager warm-up/capture
    if (timed_) TLT_CUDA_CHECK(cudaEventRecord(step_start_, stream));
    bk.input.copy_(pinned_in_.narrow(0, 0, kInputRows * size).view({kInputRows, size}),
                   /*non_blocking=*/true);
    TLT_CUDA_CHECK(cudaEventRecord(input_copied_, stream));
    Launch(bk, B, hidden_in);
    *bucket = &bk;
    return Status::OK();
  }

  // The bucket of B rows (plain or tree), created on first use (the cache pointer checked).
  Bucket& BucketFor(int64_t B, bool tree, std::map<int64_t, Bucket>* buckets = nullptr) {
    if (cache_->keys(0).data_ptr() != cache_pointer_) {
      Invalidate();
      cache_pointer_ = cache_->keys(0).data_ptr();
    }
    int64_t size = bucket_sizes_.back();
    for (int64_t s : bucket_sizes_) {
      if (s >= B) {
        size = s;
        break;
      }
    }
    Bucket& bk = (buckets != nullptr ? *buckets : buckets_)[2 * size + (tree ? 1 : 0)];
    if (!bk.input.defined()) {
      bk.size = size;
      bk.tree = tree;
      bk.input = torch::zeros({kInputRows, size},
                              torch::TensorOptions().dtype(torch::kInt64).device(device_));
    }
    return bk;
  }

  // Stages hidden_in (drafters) and replays (or captures, or computes) the bucket's step;
  // `direct`: computes it (inside a caller's capture).
  void Launch(Bucket& bk, int64_t B, const torch::Tensor& hidden_in, bool direct = false) {
    if (w_.fc_w.defined()) {
      if (!bk.hidden_in.defined()) {
        bk.hidden_in = torch::zeros({bk.size, config_.hidden_size},
                                    torch::TensorOptions().dtype(dtype_).device(device_));
      }
      bk.hidden_in.narrow(0, 0, B).copy_(hidden_in);
    }
    if (options_.use_graphs && !graphs_disabled_ && !direct) {
      if (!bk.graph) Capture(bk);
      bk.graph->replay();
      if (timed_) TLT_CUDA_CHECK(cudaEventRecord(step_end_, c10::cuda::getCurrentCUDAStream()));
    } else {
      step_->Compute(bk);
    }
  }

  // Warm-up and capture on the side stream (PyTorch refuses capture on the default stream).
  void Capture(Bucket& bk) {
    TLT_CUDA_CHECK(cudaDeviceSynchronize());
    {
      c10::cuda::CUDAStreamGuard guard(side_stream_);
      step_->Compute(bk);  // writes the same cache entries as the replay that follows
      TLT_CUDA_CHECK(cudaStreamSynchronize(side_stream_.stream()));
      bk.logits = bk.hidden = bk.packed = torch::Tensor();
      auto graph = std::make_unique<at::cuda::CUDAGraph>();
      graph->capture_begin(pool_);
      try {
        step_->Compute(bk);
        graph->capture_end();
      } catch (...) {
        // Take the side stream out of capture (the caching allocator then stops routing its
        // allocations to the graph pool), drop the partial graph, and decode eagerly from now
        // on: a later capture could meet the same failure. The step itself fails.
        cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing(side_stream_.stream(), &status) == cudaSuccess &&
            status != cudaStreamCaptureStatusNone) {
          cudaGraph_t partial = nullptr;
          cudaStreamEndCapture(side_stream_.stream(), &partial);
          if (partial != nullptr) cudaGraphDestroy(partial);
        }
        (void)cudaGetLastError();
        graphs_disabled_ = true;
        LOG(WARNING) << "cuda decoder: CUDA graph capture failed; decoding without graphs";
        throw;
      }
      bk.graph = std::move(graph);
    }
    TLT_CUDA_CHECK(cudaDeviceSynchronize());
  }

  // Collects the parameters the kernels read and builds the concatenated weights.
  void Build() { w_.Build(source_(), config_, cache_->options()); }

  // Refreshes concatenated weights after in-place loads; rebuilds if a parameter moved. A
  // parameter moved to another device or dtype is an error (the kernels would read it wrongly).
  Status CheckWeights() {
    if (w_.Refresh()) return Status::OK();
    Invalidate();
    const std::string problem = PlacementProblem(source_(), cache_->options());
    if (!problem.empty()) {
      return InvalidArgument("cuda decoder: " + problem +
                             " since the model's parameters were replaced; create a decoder "
                             "for the new placement");
    }
    Build();
    return Status::OK();
  }

  std::function<DecoderWeights()> source_;
  KvCache* cache_;
  CudaDecoderOptions options_;
  ModelConfig config_;
  c10::Device exec_device_;  // the weights' device (with its index): every call runs there
  torch::Dtype dtype_ = torch::kBFloat16;
  torch::Device device_ = torch::kCUDA;
  c10::cuda::CUDAStream side_stream_;
  decltype(at::cuda::graph_pool_handle()) pool_ = at::cuda::graph_pool_handle();
  const void* cache_pointer_ = nullptr;
  torch::Tensor device_row_padding_;  // ForwardDeviceRows' padding columns

  DecoderWeightSet w_;  // what the kernels read

  cudaEvent_t input_copied_ = nullptr;                     // after the last copy out of pinned_in_
  cudaEvent_t step_start_ = nullptr, step_end_ = nullptr;  // options_.time_steps
  bool timed_ = false;
  double device_seconds_ = 0;
  int64_t timed_steps_ = 0;

  std::vector<int64_t> bucket_sizes_;
  std::map<int64_t, Bucket> buckets_;
  // Buckets whose steps were recorded into a caller's capture (ForwardDeviceRows): their
  // buffers live in that caller's graph; dropped with the graphs (Invalidate bumps epoch_).
  std::map<int64_t, Bucket> captured_buckets_;
  int64_t epoch_ = 0;
  torch::Tensor pinned_in_, pinned_out_;
  torch::Tensor attention_counters_;  // int32 [max rows x heads], zero between kernels
  std::unique_ptr<DecodeStep> step_;  // the kernels of a step (reads w_, the cache, options_)
  bool graphs_disabled_ = false;      // a capture failed: steps run eagerly
};

}  // namespace

std::unique_ptr<CudaDecoder> CudaDecoder::Create(Transformer model, KvCache* cache,
                                                 const CudaDecoderOptions& options,
                                                 std::string* why) {
  return CreateFromWeights([model]() mutable { return WeightsOf(model); }, cache, options, why);
}

std::unique_ptr<CudaDecoder> CudaDecoder::CreateFromWeights(std::function<DecoderWeights()> weights,
                                                            KvCache* cache,
                                                            const CudaDecoderOptions& options,
                                                            std::string* why) {
  auto refuse = [&](const std::string& reason) -> std::unique_ptr<CudaDecoder> {
    if (why != nullptr) *why = reason;
    return nullptr;
  };
  const KvCacheOptions& c = cache->options();
  const DecoderWeights w = weights();
  ModelConfig config = w.config;
  config.num_hidden_layers = static_cast<int64_t>(w.layers.size());
  if (!c.device.is_cuda()) return refuse("not a CUDA device");
  if (c.dtype != torch::kBFloat16 && c.dtype != torch::kFloat16 && c.dtype != torch::kFloat32) {
    return refuse("unsupported dtype");
  }
  if (config.head_dim % 2 != 0 || config.head_dim > 256 || config.num_key_value_heads <= 0 ||
      config.num_attention_heads % config.num_key_value_heads != 0 ||
      config.num_attention_heads / config.num_key_value_heads > 16 ||
      config.num_hidden_layers < 1 || c.num_layers != config.num_hidden_layers) {
    return refuse("unsupported attention shape or a cache for another layer count");
  }
  const std::string placement = PlacementProblem(w, c);
  if (!placement.empty()) return refuse(placement);
  try {
    return std::make_unique<CudaDecoderImpl>(std::move(weights), config, cache, options,
                                             w.embed.device());
  } catch (const c10::Error& e) {
    return refuse(e.what_without_backtrace());
  }
}

}  // namespace tlt::models
