// Per-kernel timing of one decode step's kernels at batch 1 (Qwen2-0.5B shapes by default):
// each kernel is captured 100 times back to back in a CUDA graph and replayed, so a figure is
// what the kernel costs inside the engine's graph (launch gaps included), and GB/s its weight
// bytes over that time. Also the whole layer chain (q/k/v GEMV, attention, o_proj GEMV,
// gate/up GEMV, down GEMV) x layers, for comparison with the engine's step, and the attention
// kernel alone at 1 and 32 rows over contexts of 64 to 8000 keys, and tree attention
// (speculative verification: 49-node draft trees of 1, 4 and 16 requests after 200, 800 and 3000
// cached keys) with the per-row kernel (TltDecodeAttention's tree form) and the shared-key tiles
// (TltTreeAttention, gpu/tree_attention.h) side by side.
//   decode_kernels_bench [--rows 1] [--hidden 896 --heads 14 --kv-heads 2 --head-dim 64
//     --intermediate 4864 --vocab 151936 --layers 24 --context 200]
// Prints one JSON object. CUDA only, no LibTorch (gpu/ kernels and the CUDA runtime).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gpu/decode_kernels.h"
#include "gpu/gemv_kernels.h"
#include "gpu/tree_attention.h"

namespace {

#define CHECK_CUDA(expr)                                                                 \
  do {                                                                                   \
    cudaError_t e = (expr);                                                              \
    if (e != cudaSuccess) {                                                              \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e)); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

void* DeviceBuffer(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  CHECK_CUDA(cudaMemset(p, 0, bytes));  // zeros: finite values, the kernels' speed is the same
  return p;
}

// Microseconds per call of `launch` captured `reps` times into one graph, median of 5 replays.
// With TLT_BENCH_EAGER=1 each kernel runs once, eagerly, and timings are 0 (for a profiler).
double GraphMicros(const std::function<void(cudaStream_t)>& launch, int reps, cudaStream_t s) {
  launch(s);  // warm-up (and any one-time attribute setting) outside the capture
  CHECK_CUDA(cudaStreamSynchronize(s));
  static const bool eager = std::getenv("TLT_BENCH_EAGER") != nullptr &&
                            std::string(std::getenv("TLT_BENCH_EAGER")) == "1";
  if (eager) return 0;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < reps; ++i) launch(s);
  CHECK_CUDA(cudaStreamEndCapture(s, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<float> times;
  for (int t = 0; t < 6; ++t) {
    CHECK_CUDA(cudaEventRecord(a, s));
    CHECK_CUDA(cudaGraphLaunch(exec, s));
    CHECK_CUDA(cudaEventRecord(b, s));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    if (t > 0) times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  return 1e3 * times[times.size() / 2] / reps;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, long> a = {{"rows", 1},    {"hidden", 896},        {"heads", 14},
                                   {"kv-heads", 2}, {"head-dim", 64},       {"intermediate", 4864},
                                   {"vocab", 151936}, {"layers", 24},       {"context", 200}};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = std::string(argv[i]).substr(2);
    if (!a.count(k)) {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
    a[k] = std::atol(argv[i + 1]);
  }
  const long R = a["rows"], Hd = a["hidden"], H = a["heads"], KV = a["kv-heads"];
  const long D = a["head-dim"], I = a["intermediate"], V = a["vocab"], L = a["layers"];
  const long ctx = a["context"], max_len = ctx + 64, qkv_n = (H + 2 * KV) * D;
  const int dt = kTltBFloat16;
  const size_t e = 2;
  cudaStream_t s;
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // Weights of one layer (every layer reads the same buffers: L2 hits are possible for the
  // small ones, as they are not in the engine; the layer chain uses `layers` distinct copies).
  auto alloc_layer = [&]() {
    return std::vector<void*>{DeviceBuffer(qkv_n * Hd * e), DeviceBuffer(qkv_n * e),
                              DeviceBuffer(Hd * H * D * e), DeviceBuffer(2 * I * Hd * e),
                              DeviceBuffer(Hd * I * e),     DeviceBuffer(Hd * e)};
  };
  std::vector<std::vector<void*>> layers;
  for (long l = 0; l < L; ++l) layers.push_back(alloc_layer());
  void* head = DeviceBuffer(V * Hd * e);
  void* x = DeviceBuffer(R * Hd * e);
  void* x2 = DeviceBuffer(R * Hd * e);
  void* qkv = DeviceBuffer(R * qkv_n * e);
  void* attn = DeviceBuffer(R * H * D * e);
  void* act = DeviceBuffer(R * I * e);
  void* logits = DeviceBuffer(R * V * 4);
  void* kc = DeviceBuffer(R * max_len * KV * D * e);
  void* vc = DeviceBuffer(R * max_len * KV * D * e);
  void* cs = DeviceBuffer(max_len * D * e);
  void* sn = DeviceBuffer(max_len * D * e);
  double* packed = static_cast<double*>(DeviceBuffer(2 * R * sizeof(double)));
  void* gws = DeviceBuffer(TltGemvWorkspaceBytes(R));
  float* aws = static_cast<float*>(
      DeviceBuffer(TltDecodeAttentionWorkspaceBytes(R, H, KV, D, max_len)));
  int* counters = static_cast<int*>(DeviceBuffer(TltDecodeAttentionCounterCount(R, H) * 4));
  std::vector<int64_t> host_pos(R, ctx), host_slot(R);
  for (long r = 0; r < R; ++r) host_slot[r] = r;
  int64_t* pos = static_cast<int64_t*>(DeviceBuffer(R * 8));
  int64_t* slot = static_cast<int64_t*>(DeviceBuffer(R * 8));
  CHECK_CUDA(cudaMemcpy(pos, host_pos.data(), R * 8, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(slot, host_slot.data(), R * 8, cudaMemcpyHostToDevice));

  auto params = [&](const void* in, const void* norm, const void* w, const void* bias,
                    const void* residual, void* out, long n, long k, int silu) {
    TltGemvParams p{};
    p.dtype = dt;
    p.x = in;
    p.norm_weight = norm;
    p.eps = 1e-6f;
    p.weight = w;
    p.bias = bias;
    p.residual = residual;
    p.out = out;
    p.rows = R;
    p.n = n;
    p.k = k;
    p.silu_mul = silu;
    return p;
  };
  auto gemv = [&](const void* in, const void* norm, const void* w, const void* bias,
                  const void* residual, void* out, long n, long k, int silu, cudaStream_t st) {
    const TltGemvParams p = params(in, norm, w, bias, residual, out, n, k, silu);
    CHECK_CUDA(TltGemv(&p, st));
  };
  auto attention = [&](int layer_unused, cudaStream_t st) {
    (void)layer_unused;
    CHECK_CUDA(TltDecodeAttention(dt, qkv, cs, sn, kc, vc, pos, nullptr, nullptr, slot, attn, aws,
                                  counters, R, H, KV, D, max_len, st));
  };
  const std::vector<void*>& w = layers[0];
  std::map<std::string, std::pair<double, double>> kernels;  // name -> (us, weight bytes)
  const int reps = 100;
  kernels["qkv_gemv_norm_bias"] = {
      GraphMicros([&](cudaStream_t st) { gemv(x, w[5], w[0], w[1], nullptr, qkv, qkv_n, Hd, 0, st); },
                  reps, s),
      double(qkv_n * Hd * e)};
  kernels["attention"] = {GraphMicros([&](cudaStream_t st) { attention(0, st); }, reps, s),
                          double(2 * ctx * KV * D * e)};
  kernels["o_proj_gemv_residual"] = {
      GraphMicros([&](cudaStream_t st) { gemv(attn, nullptr, w[2], nullptr, x, x2, Hd, H * D, 0, st); },
                  reps, s),
      double(Hd * H * D * e)};
  kernels["gate_up_gemv_norm_silu"] = {
      GraphMicros([&](cudaStream_t st) { gemv(x, w[5], w[3], nullptr, nullptr, act, I, Hd, 1, st); },
                  reps, s),
      double(2 * I * Hd * e)};
  kernels["down_gemv_residual"] = {
      GraphMicros([&](cudaStream_t st) { gemv(act, nullptr, w[4], nullptr, x, x2, Hd, I, 0, st); },
                  reps, s),
      double(Hd * I * e)};
  kernels["lm_head_gemv_norm_argmax"] = {
      GraphMicros(
          [&](cudaStream_t st) {
            TltGemvParams p = params(x, w[5], head, nullptr, nullptr, logits, V, Hd, 0);
            p.out_float32 = 1;
            p.greedy_packed = packed;
            p.packed_stride = R;
            p.workspace = gws;
            CHECK_CUDA(TltGemv(&p, st));
          },
          10, s),
      double(V * Hd * e)};
  // The layer chain over distinct weights, as in the engine's graph.
  const double chain = GraphMicros(
      [&](cudaStream_t st) {
        for (long l = 0; l < L; ++l) {
          const std::vector<void*>& lw = layers[l];
          gemv(x, lw[5], lw[0], lw[1], nullptr, qkv, qkv_n, Hd, 0, st);
          attention(0, st);
          gemv(attn, nullptr, lw[2], nullptr, x, x2, Hd, H * D, 0, st);
          gemv(x2, lw[5], lw[3], nullptr, nullptr, act, I, Hd, 1, st);
          gemv(act, nullptr, lw[4], nullptr, x2, x, Hd, I, 0, st);
        }
      },
      1, s);
  // Attention alone across context lengths, in a cache of 8256 positions (the grid is sized
  // for it, as in an engine with long sequences), at 1 and 32 rows.
  const long sweep_len = 8256;
  std::map<std::string, double> by_context;
  for (long rows : {1L, 32L}) {
    void* k2 = DeviceBuffer(rows * sweep_len * KV * D * e);
    void* v2 = DeviceBuffer(rows * sweep_len * KV * D * e);
    void* q2 = DeviceBuffer(rows * qkv_n * e);
    void* o2 = DeviceBuffer(rows * H * D * e);
    void* c2 = DeviceBuffer(sweep_len * D * e);
    void* s2 = DeviceBuffer(sweep_len * D * e);
    float* w2 = static_cast<float*>(
        DeviceBuffer(TltDecodeAttentionWorkspaceBytes(rows, H, KV, D, sweep_len)));
    int* n2 = static_cast<int*>(DeviceBuffer(TltDecodeAttentionCounterCount(rows, H) * 4));
    int64_t* p2 = static_cast<int64_t*>(DeviceBuffer(rows * 8));
    int64_t* sl2 = static_cast<int64_t*>(DeviceBuffer(rows * 8));
    std::vector<int64_t> slots2(rows);
    for (long r = 0; r < rows; ++r) slots2[r] = r;
    CHECK_CUDA(cudaMemcpy(sl2, slots2.data(), rows * 8, cudaMemcpyHostToDevice));
    for (long context : {64L, 200L, 1000L, 4000L, 8000L}) {
      std::vector<int64_t> pos2(rows, context);
      CHECK_CUDA(cudaMemcpy(p2, pos2.data(), rows * 8, cudaMemcpyHostToDevice));
      by_context["rows" + std::to_string(rows) + "_ctx" + std::to_string(context)] = GraphMicros(
          [&](cudaStream_t st) {
            CHECK_CUDA(TltDecodeAttention(dt, q2, c2, s2, k2, v2, p2, nullptr, nullptr, sl2, o2,
                                          w2, n2, rows, H, KV, D, sweep_len, st));
          },
          reps, s);
    }
  }
  // Tree attention: every request's 49 nodes in one call (node i at context + i, its ancestors
  // from a fixed parent pattern), q already rotated.
  std::map<std::string, double> tree_us;
  const long nodes = 49, tree_len = 4096;
  for (long requests : {1L, 4L, 16L}) {
    const long rows = requests * nodes;
    void* kt = DeviceBuffer(requests * tree_len * KV * D * e);
    void* vt = DeviceBuffer(requests * tree_len * KV * D * e);
    void* qt = DeviceBuffer(rows * H * D * e);
    void* ot = DeviceBuffer(rows * H * D * e);
    float* ws_row = static_cast<float*>(
        DeviceBuffer(TltDecodeAttentionWorkspaceBytes(rows, H, KV, D, tree_len)));
    float* ws_tile = static_cast<float*>(
        DeviceBuffer(TltTreeAttentionWorkspaceBytes(rows, H, KV, D, tree_len)));
    int* nt = static_cast<int*>(DeviceBuffer(TltDecodeAttentionCounterCount(rows, H) * 4));
    // positions, tree bases, masks, slots: [4][rows]
    int64_t* fields = static_cast<int64_t*>(DeviceBuffer(4 * rows * 8));
    for (long context : {200L, 800L, 3000L}) {
      std::vector<int64_t> host(4 * rows);
      for (long r = 0; r < requests; ++r) {
        std::vector<long> parent(nodes, -1);
        for (long i = 0; i < nodes; ++i) {
          const long row = r * nodes + i;
          if (i > 0) parent[i] = (i * 7 + 3) % i;
          uint64_t mask = 0;
          for (long a = parent[i]; a >= 0; a = parent[a]) mask |= 1ull << a;
          host[row] = context + i;
          host[rows + row] = context;
          host[2 * rows + row] = static_cast<int64_t>(mask);
          host[3 * rows + row] = r;
        }
      }
      CHECK_CUDA(cudaMemcpy(fields, host.data(), 4 * rows * 8, cudaMemcpyHostToDevice));
      const std::string key = "req" + std::to_string(requests) + "_ctx" + std::to_string(context);
      tree_us["per_row_" + key] = GraphMicros(
          [&](cudaStream_t st) {
            CHECK_CUDA(TltDecodeAttention(dt, qt, nullptr, nullptr, kt, vt, fields,
                                          fields + rows, fields + 2 * rows, fields + 3 * rows,
                                          ot, ws_row, nt, rows, H, KV, D, tree_len, st));
          },
          reps, s);
      if (TltTreeAttentionSupported(dt, H, KV, D) != 0) {
        tree_us["shared_keys_" + key] = GraphMicros(
            [&](cudaStream_t st) {
              CHECK_CUDA(TltTreeAttention(dt, qt, kt, vt, fields, fields + rows,
                                          fields + 2 * rows, fields + 3 * rows, ot, ws_tile, nt,
                                          rows, H, KV, D, tree_len, st));
            },
            reps, s);
      }
    }
  }
  std::printf("{\"rows\": %ld, \"layers\": %ld, \"tree_attention_us\": {", R, L);
  bool first_tree = true;
  for (const auto& [name, us] : tree_us) {
    std::printf("%s\"%s\": %.2f", first_tree ? "" : ", ", name.c_str(), us);
    first_tree = false;
  }
  std::printf("}, \"attention_us_by_context\": {");
  bool first_context = true;
  for (const auto& [name, us] : by_context) {
    std::printf("%s\"%s\": %.2f", first_context ? "" : ", ", name.c_str(), us);
    first_context = false;
  }
  std::printf("}, \"kernels\": {");
  bool first = true;
  for (const auto& [name, v] : kernels) {
    std::printf("%s\"%s\": {\"us\": %.2f, \"gb_per_s\": %.0f}", first ? "" : ", ", name.c_str(),
                v.first, v.second / v.first / 1e3);
    first = false;
  }
  std::printf("}, \"layer_chain_us\": %.1f, \"layer_chain_us_per_layer\": %.2f}\n", chain,
              chain / L);
  return 0;
}
