// DecodeStep (cuda_decode_step.h): the kernels of one CudaDecoder step.
#include "models/cuda_decode_step.h"

#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "gpu/decode_kernels.h"
#include "gpu/gemv_kernels.h"
#include "gpu/skinny_gemm.h"
#include "gpu/tree_attention.h"

namespace tlt::models {

class DecodeStep::Impl {
 public:
  Impl(const DecoderWeightSet& weights, const ModelConfig& config, KvCache* cache,
       const CudaDecoderOptions& options, torch::Dtype dtype, torch::Device device,
       torch::Tensor attention_counters)
      : w_(weights),
        config_(config),
        cache_(cache),
        options_(options),
        dtype_(dtype),
        device_(device),
        kernel_dtype_(KernelDtype(dtype)),
        attention_counters_(std::move(attention_counters)) {}

  void RmsNorm(const torch::Tensor& x, const torch::Tensor& w, torch::Tensor& y,
               cudaStream_t stream) {
    TLT_CUDA_CHECK(TltRmsNorm(kernel_dtype_, x.data_ptr(), w.data_ptr(), y.data_ptr(), x.size(0),
                              x.size(1), static_cast<float>(config_.rms_norm_eps), stream));
  }

  // The step for bk.size rows; outputs into bk.logits/hidden/packed.
  void Compute(StepBuffers& bk) {
    const int64_t B = bk.size, H = config_.num_attention_heads, KV = config_.num_key_value_heads;
    const int64_t D = config_.head_dim, I = config_.intermediate_size;
    const int64_t max_length = cache_->options().max_length;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    const int64_t ws_floats =
        std::max(TltDecodeAttentionWorkspaceBytes(B, H, KV, D, max_length),
                 bk.tree && options_.tree_attention_shared_keys
                     ? TltTreeAttentionWorkspaceBytes(B, H, KV, D, max_length)
                     : int64_t{0}) /
        static_cast<int64_t>(sizeof(float));
    const float eps = static_cast<float>(config_.rms_norm_eps);
    auto gemv_ok = [&](int64_t k) {
      // options_.gemv_max_rows (4 by default; see its comment).
      return options_.small_batch_gemv && B <= options_.gemv_max_rows &&
             TltGemvSupported(kernel_dtype_, B, k) != 0;
    };
    if (gemv_ok(config_.hidden_size)) {
      return ForwardSmall(bk, gemv_ok(H * D), gemv_ok(I), ws_floats, eps);
    }
    torch::Tensor h = Input(bk, /*gemv=*/false);
    torch::Tensor x = torch::empty_like(h);
    RmsNorm(h, w_.layers[0].in_norm, x, stream);
    for (size_t l = 0; l < w_.layers.size(); ++l) {
      const LayerWeights& L = w_.layers[l];
      torch::Tensor qkv = Project(x, L.qkv_w.dest, L.qkv_b.dest, torch::Tensor(), stream);
      torch::Tensor attn = Attention(bk, qkv, static_cast<int64_t>(l), ws_floats, stream);
      h = Project(attn, L.o_w, L.o_b, h, stream);
      RmsNorm(h, L.post_norm, x, stream);
      torch::Tensor gate_up =
          Project(x, L.gate_up_w.dest, torch::Tensor(), torch::Tensor(), stream);
      torch::Tensor act = torch::empty({B, I}, opts);
      TLT_CUDA_CHECK(TltSiluMul(kernel_dtype_, gate_up.data_ptr(), act.data_ptr(), B, I, stream));
      h = Project(act, L.down_w, torch::Tensor(), h, stream);
      const torch::Tensor& next =
          l + 1 < w_.layers.size() ? w_.layers[l + 1].in_norm : w_.final_norm;
      if (next.defined()) {
        RmsNorm(h, next, x, stream);
      } else {
        x = h;  // no final norm (a drafter): the hidden state is the layer's output
      }
    }
    Head(bk, x, /*gemv=*/false, eps, stream);
  }

  // x [B, k] . w [n, k]^T (+ bias) (+ residual): the tensor-core GEMM where it applies
  // (options_.tensor_core_gemm), else cuBLAS, which accumulates into `residual` in place (the
  // step's own residual stream, read by nothing else).
  torch::Tensor Project(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                        const torch::Tensor& residual, cudaStream_t stream) {
    const int64_t B = x.size(0), n = w.size(0), k = w.size(1);
    auto aligned = [](const torch::Tensor& t) {
      return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
    };
    if (options_.tensor_core_gemm && B > 4 && x.is_contiguous() && w.is_contiguous() &&
        aligned(x) && aligned(w) && TltSkinnyGemmSupported(kernel_dtype_, B, n, k) != 0) {
      torch::Tensor out = torch::empty({B, n}, x.options());
      const torch::Tensor res = residual.defined() ? residual.contiguous() : torch::Tensor();
      TltSkinnyGemmParams p{};
      p.dtype = kernel_dtype_;
      p.x = x.data_ptr();
      p.weight = w.data_ptr();
      p.bias = bias.defined() ? bias.data_ptr() : nullptr;
      p.residual = res.defined() ? res.data_ptr() : nullptr;
      p.out = out.data_ptr();
      p.rows = B;
      p.n = n;
      p.k = k;
      TLT_CUDA_CHECK(TltSkinnyGemm(&p, stream));
      return out;
    }
    torch::Tensor y;
    if (residual.defined()) {
      // In place: one GEMM with beta 1 (addmm into a new tensor first copies the residual).
      y = residual;
      y.addmm_(x, w.t());
      if (bias.defined()) y.add_(bias);
    } else {
      y = bias.defined() ? torch::addmm(bias, x, w.t()) : torch::mm(x, w.t());
    }
    return y;
  }

  // The first layer's input: the token embeddings, or the input projection of (embedding,
  // hidden input) for a drafter: one kernel concatenates them (gathering the hidden rows when
  // bk.hidden_source is set), then one GEMV (gemv: small buckets) or cuBLAS projects.
  torch::Tensor Input(StepBuffers& bk, bool gemv) {
    if (!w_.fc_w.defined()) return w_.embed.index_select(0, bk.input[kToken]);
    const int64_t B = bk.size, H = config_.hidden_size;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    const bool gathered = bk.hidden_source.defined();
    const torch::Tensor& source = gathered ? bk.hidden_source : bk.hidden_in;
    TORCH_CHECK(w_.embed.is_contiguous() && source.is_contiguous(),
                "cuda decoder: the drafter input kernel reads contiguous rows");
    torch::Tensor both = torch::empty({B, 2 * H}, source.options());
    TLT_CUDA_CHECK(TltEmbedConcat(
        kernel_dtype_, bk.input[kToken].data_ptr<int64_t>(), w_.embed.data_ptr(),
        w_.embed.size(0), source.data_ptr(), source.size(0),
        gathered ? bk.hidden_gather.data_ptr<int64_t>() : nullptr, both.data_ptr(), B,
        gathered ? bk.hidden_rows : B, H, stream));
    const auto aligned = [](const torch::Tensor& t) {
      return t.is_contiguous() && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
    };
    if (gemv && TltGemvSupported(kernel_dtype_, B, 2 * H) != 0 && aligned(w_.fc_w)) {
      torch::Tensor out = torch::empty({B, H}, both.options());
      TltGemvParams p = GemvParams(both, torch::Tensor(), w_.fc_w, out, 0.0f);
      p.bias = TensorPointer(w_.fc_b);
      TLT_CUDA_CHECK(TltGemv(&p, stream));
      return out;
    }
    return w_.fc_b.defined() ? torch::addmm(w_.fc_b, both, w_.fc_w.t())
                             : torch::mm(both, w_.fc_w.t());
  }

  // Rotary, cache write and attention for one layer; qkv [B, (H + 2 KV) D] -> [B, H D].
  torch::Tensor Attention(StepBuffers& bk, const torch::Tensor& qkv, int64_t layer,
                          int64_t ws_floats, cudaStream_t stream) {
    const int64_t B = bk.size, H = config_.num_attention_heads, KV = config_.num_key_value_heads;
    const int64_t D = config_.head_dim, max_length = cache_->options().max_length;
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    const int64_t* positions = bk.input[kPosition].data_ptr<int64_t>();
    const int64_t* slots = bk.input[kSlot].data_ptr<int64_t>();
    void* kc = cache_->keys(layer).data_ptr();
    void* vc = cache_->values(layer).data_ptr();
    torch::Tensor attn = torch::empty({B, H * D}, opts);
    torch::Tensor ws = torch::empty({ws_floats}, opts.dtype(torch::kFloat32));
    if (options_.fuse_rotary && !bk.tree) {
      TLT_CUDA_CHECK(TltDecodeAttention(
          kernel_dtype_, qkv.data_ptr(), w_.cos.data_ptr(), w_.sin.data_ptr(), kc, vc, positions,
          nullptr, nullptr, slots, attn.data_ptr(), ws.data_ptr<float>(),
          attention_counters_.data_ptr<int>(), B, H, KV, D, max_length, stream));
    } else {
      // Tree rows read each other's new keys: all rows write before any attends.
      const int64_t* rotary = bk.input[kRotaryPosition].data_ptr<int64_t>();
      const int64_t* base = bk.tree ? bk.input[kTreeBase].data_ptr<int64_t>() : nullptr;
      const int64_t* mask = bk.tree ? bk.input[kTreeMask].data_ptr<int64_t>() : nullptr;
      torch::Tensor q = torch::empty({B, H * D}, opts);
      TLT_CUDA_CHECK(TltRotaryCacheWrite(kernel_dtype_, qkv.data_ptr(), w_.cos.data_ptr(),
                                         w_.sin.data_ptr(), positions, rotary, slots, q.data_ptr(),
                                         kc, vc, B, H, KV, D, max_length, stream));
      if (bk.tree && options_.tree_attention_shared_keys &&
          TltTreeAttentionSupported(kernel_dtype_, H, KV, D) != 0) {
        TLT_CUDA_CHECK(TltTreeAttention(kernel_dtype_, q.data_ptr(), kc, vc, positions, base, mask,
                                        slots, attn.data_ptr(), ws.data_ptr<float>(),
                                        attention_counters_.data_ptr<int>(), B, H, KV, D,
                                        max_length, stream));
      } else {
        TLT_CUDA_CHECK(TltDecodeAttention(kernel_dtype_, q.data_ptr(), nullptr, nullptr, kc, vc,
                                          positions, base, mask, slots, attn.data_ptr(),
                                          ws.data_ptr<float>(),
                                          attention_counters_.data_ptr<int>(), B, H, KV, D,
                                          max_length, stream));
      }
    }
    return attn;
  }

  // Small batches (gpu/gemv_kernels.h): every projection is one GEMV, the RMSNorms fused in
  // front of q/k/v, gate/up and the LM head, the bias, residual add and SiLU*mul behind; per
  // layer four GEMVs plus the attention kernel(s), then the LM-head GEMV (float32 logits, the
  // normed hidden state, greedy argmax) and one tiny pack kernel. gemv_o / gemv_down false (k
  // too large for the GEMV's shared memory): cuBLAS addmm for that projection.
  void ForwardSmall(StepBuffers& bk, bool gemv_o, bool gemv_down, int64_t ws_floats, float eps) {
    const int64_t B = bk.size, H = config_.num_attention_heads, KV = config_.num_key_value_heads;
    const int64_t D = config_.head_dim, I = config_.intermediate_size;
    const int64_t qkv_n = (H + 2 * KV) * D;
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    const torch::Tensor none;
    torch::Tensor h = Input(bk, /*gemv=*/true);
    for (size_t l = 0; l < w_.layers.size(); ++l) {
      const LayerWeights& L = w_.layers[l];
      torch::Tensor qkv = torch::empty({B, qkv_n}, opts);
      TltGemvParams p = GemvParams(h, L.in_norm, L.qkv_w.dest, qkv, eps);
      p.bias = TensorPointer(L.qkv_b.dest);
      TLT_CUDA_CHECK(TltGemv(&p, stream));
      torch::Tensor attn = Attention(bk, qkv, static_cast<int64_t>(l), ws_floats, stream);
      if (gemv_o) {
        torch::Tensor next = torch::empty_like(h);
        p = GemvParams(attn, none, L.o_w, next, eps);
        p.bias = TensorPointer(L.o_b);
        p.residual = h.data_ptr();
        TLT_CUDA_CHECK(TltGemv(&p, stream));
        h = next;
      } else {
        h.addmm_(attn, L.o_w.t());  // in place: the step's own residual stream
        if (L.o_b.defined()) h.add_(L.o_b);
      }
      torch::Tensor act = torch::empty({B, I}, opts);
      p = GemvParams(h, L.post_norm, L.gate_up_w.dest, act, eps);
      p.silu_mul = 1;
      TLT_CUDA_CHECK(TltGemv(&p, stream));
      if (gemv_down) {
        torch::Tensor next = torch::empty_like(h);
        p = GemvParams(act, none, L.down_w, next, eps);
        p.residual = h.data_ptr();
        TLT_CUDA_CHECK(TltGemv(&p, stream));
        h = next;
      } else {
        h.addmm_(act, L.down_w.t());
      }
    }
    Head(bk, h, /*gemv=*/true, eps, stream);
  }

  static const void* TensorPointer(const torch::Tensor& t) {
    return t.defined() ? t.data_ptr() : nullptr;
  }

  // A GEMV out [B, n] = x [B, k] W^T (W [n, k], or [2 n, k] gate/up rows; n from out's width),
  // x RMSNorm'ed with `norm` first when defined. Bias, residual and epilogue: the caller.
  TltGemvParams GemvParams(const torch::Tensor& x, const torch::Tensor& norm,
                           const torch::Tensor& w, const torch::Tensor& out, float eps) const {
    TORCH_CHECK(x.is_contiguous() && w.is_contiguous() && out.is_contiguous(),
                "cuda decoder: GEMV operands must be contiguous");
    TltGemvParams p{};
    p.dtype = kernel_dtype_;
    p.x = x.data_ptr();
    p.norm_weight = TensorPointer(norm);
    p.eps = eps;
    p.weight = w.data_ptr();
    p.out = out.data_ptr();
    p.rows = x.size(0);
    p.n = out.size(1);
    p.k = x.size(1);
    return p;
  }

  // The step's tail (Compute and ForwardSmall): bk.hidden = the final-normed state [B, hidden]
  // (model dtype), bk.logits = float32 logits [B, V], bk.packed = float64 [2, B]: greedy
  // tokens (argmax, first index of the maximum) and zero log-probs (plain steps only; tree
  // steps leave it undefined). gemv: `h` is the residual
  // stream before the final RMSNorm; one GEMV normalizes it (writing bk.hidden), applies the
  // head straight to float32 and reduces the argmax per block, a pack kernel finishes it.
  // Otherwise `h` is already normed: cuBLAS mm, .to(float32), TltGreedyPack.
  void Head(StepBuffers& bk, const torch::Tensor& h, bool gemv, float eps, cudaStream_t stream) {
    const int64_t B = bk.size, V = w_.head.size(0);
    auto opts = torch::TensorOptions().dtype(dtype_).device(device_);
    // Tree steps (verification, drafting) read only logits and hidden states: no greedy pack.
    const bool greedy = !bk.tree;
    bk.packed = greedy ? torch::empty({2, B}, opts.dtype(torch::kFloat64)) : torch::Tensor();
    if (!gemv) {
      bk.hidden = h;
      bk.logits = torch::mm(h, w_.head.t()).to(torch::kFloat32).contiguous();
      if (greedy) {
        TLT_CUDA_CHECK(TltGreedyPack(bk.logits.data_ptr<float>(), B, V,
                                     bk.packed.data_ptr<double>(), B, stream));
      }
      return;
    }
    // Without a final norm (a drafter) the hidden state is h itself.
    bk.hidden = w_.final_norm.defined() ? torch::empty_like(h) : h;
    bk.logits = torch::empty({B, V}, opts.dtype(torch::kFloat32));
    TltGemvParams p = GemvParams(h, w_.final_norm, w_.head, bk.logits, eps);
    p.norm_out = w_.final_norm.defined() ? bk.hidden.data_ptr() : nullptr;
    p.out_float32 = 1;
    torch::Tensor ws;
    if (greedy) {
      ws = torch::empty({TltGemvWorkspaceBytes(B)}, opts.dtype(torch::kUInt8));
      p.greedy_packed = bk.packed.data_ptr<double>();
      p.packed_stride = B;
      p.workspace = ws.data_ptr();
    }
    TLT_CUDA_CHECK(TltGemv(&p, stream));
  }

 private:
  const DecoderWeightSet& w_;
  const ModelConfig& config_;
  KvCache* cache_;
  const CudaDecoderOptions& options_;
  torch::Dtype dtype_;
  torch::Device device_;
  int kernel_dtype_;
  torch::Tensor attention_counters_;  // int32 [max rows x heads], zero between kernels
};

DecodeStep::DecodeStep(const DecoderWeightSet& weights, const ModelConfig& config, KvCache* cache,
                       const CudaDecoderOptions& options, torch::Dtype dtype, torch::Device device,
                       torch::Tensor attention_counters)
    : impl_(std::make_unique<Impl>(weights, config, cache, options, dtype, device,
                                   std::move(attention_counters))) {}

DecodeStep::~DecodeStep() = default;

void DecodeStep::Compute(StepBuffers& buffers) { impl_->Compute(buffers); }

}  // namespace tlt::models
