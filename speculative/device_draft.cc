// DeviceDraftLoop (device_draft.h). Compiled only with the fused CUDA decoder (gpu/ kernels).
#include "speculative/device_draft.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "gpu/draft_kernels.h"

namespace tlt::speculative {
namespace {

int64_t MaxDepth(const Strategy& s) { return s.is_chain() ? s.max_draft_tokens() : s.steps; }

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::OK();
  return Internal(std::string("device draft: ") + what + ": " + cudaGetErrorString(err));
}

}  // namespace

bool DeviceDraftFits(const Strategy& strategy, int64_t vocab_size,
                     const std::vector<DeviceDraftRequest>& requests, int64_t drafter_max_rows,
                     int64_t drafter_max_length) {
  const int64_t k = strategy.top_k, B = static_cast<int64_t>(requests.size());
  const int64_t drafted = (MaxDepth(strategy) - 1) * k;  // nodes the drafter writes per request
  if (B == 0 || k > 16 || k > vocab_size || B * k > drafter_max_rows || drafted > 64) return false;
  for (const DeviceDraftRequest& r : requests) {
    if (r.base < 1 || r.base + drafted > drafter_max_length) return false;
  }
  return true;
}

struct DeviceDraftLoop::Shape {
  int64_t batch = 0, k = 0, max_depth = 0, capacity = 0;
  // Inputs (copied in each step): [3, B] base, slot, root token; the roots' hidden and logits.
  torch::Tensor meta, root_hidden, root_logits;
  // State and outputs (see TltDraftExpandParams).
  torch::Tensor candidates, frontier, frontier_mask, rows, gather, values, ids;
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  int64_t epoch = -1;  // the drafter's epoch() the graph was captured at
  int64_t eager_runs = 0;
};

struct DeviceDraftLoop::Cuda {
  explicit Cuda(c10::DeviceIndex device)
      : side_stream(c10::cuda::getStreamFromPool(false, device)),
        pool(at::cuda::graph_pool_handle()) {}
  c10::cuda::CUDAStream side_stream;
  decltype(at::cuda::graph_pool_handle()) pool;
};

DeviceDraftLoop::DeviceDraftLoop(models::CudaDecoder* drafter, bool use_graphs)
    : drafter_(drafter), use_graphs_(use_graphs) {}

DeviceDraftLoop::~DeviceDraftLoop() = default;

int64_t DeviceDraftLoop::num_graphs() const {
  int64_t n = 0;
  for (const auto& [key, shape] : shapes_) n += shape->graph ? 1 : 0;
  return n;
}

// The kernel sequence of one draft over the shape's static buffers (eager, or being captured:
// it reads the current stream at each launch).
Status DeviceDraftLoop::RunLoop(Shape& s) {
  static_assert(models::CudaDecoder::kDeviceRowFields == kTltDraftRowFields,
                "the expansion writes the decoder's device-row layout");
  const int64_t B = s.batch, k = s.k;
  TltDraftExpandParams p{};
  p.requests = B;
  p.k = static_cast<int>(k);
  p.values = s.values.data_ptr<float>();
  p.ids = s.ids.data_ptr<int64_t>();
  p.base = s.meta.data_ptr<int64_t>();
  p.slot = p.base + B;
  p.root_token = p.base + 2 * B;
  p.candidates = s.candidates.data_ptr<double>();
  p.capacity = s.capacity;
  p.frontier = s.frontier.data_ptr<int32_t>();
  p.frontier_mask = s.frontier_mask.data_ptr<int64_t>();
  p.rows = s.rows.data_ptr<int64_t>();
  p.gather = s.gather.data_ptr<int64_t>();
  auto stream = [] { return c10::cuda::getCurrentCUDAStream().stream(); };
  RETURN_NOT_OK(
      CudaStatus(TltDraftTopK(s.root_logits.data_ptr<float>(), B, s.root_logits.size(1), p.k,
                              s.values.data_ptr<float>(), s.ids.data_ptr<int64_t>(), stream()),
                 "root top-k"));
  p.depth = 0;
  RETURN_NOT_OK(CudaStatus(TltDraftExpand(&p, stream()), "root expansion"));
  torch::Tensor source = s.root_hidden;  // the hidden states the next rows gather from
  for (int64_t depth = 1; depth < s.max_depth; ++depth) {
    // Row i's input hidden state is source[gather[i]] (gathered by the drafter's input kernel).
    ASSIGN_OR_RETURN(models::StepTensors out,
                     drafter_->ForwardDeviceRows(s.rows, source, s.gather));
    RETURN_NOT_OK(
        CudaStatus(TltDraftTopK(out.logits.data_ptr<float>(), B * k, out.logits.size(1), p.k,
                                s.values.data_ptr<float>(), s.ids.data_ptr<int64_t>(), stream()),
                   "top-k"));
    p.depth = static_cast<int>(depth);
    RETURN_NOT_OK(CudaStatus(TltDraftExpand(&p, stream()), "expansion"));
    source = out.hidden;  // read by the next step's input kernel (a buffer of its own)
  }
  return Status::OK();
}

// Captures the shape's loop as one graph on the side stream; false (graphs off from then on,
// the caller drafts eagerly) when the capture fails in any way.
bool DeviceDraftLoop::Capture(Shape& s) {
  if (!cuda_) cuda_ = std::make_unique<Cuda>(s.meta.device().index());
  s.graph.reset();
  const int64_t epoch = drafter_->epoch();
  TORCH_CHECK(cudaDeviceSynchronize() == cudaSuccess, "device draft: synchronize");
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  Status captured = Status::OK();
  bool ended = false;
  {
    c10::cuda::CUDAStreamGuard side(cuda_->side_stream);
    try {
      graph->capture_begin(cuda_->pool);
      try {
        captured = RunLoop(s);
      } catch (const c10::Error& e) {
        captured = Internal(e.what_without_backtrace());
      }
      graph->capture_end();  // ends the allocator's routing to the pool too
      ended = true;
    } catch (const c10::Error& e) {
      if (captured.ok()) captured = Internal(e.what_without_backtrace());
    }
    if (!ended) {  // capture_end failed: take the stream out of capture at least
      cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
      cudaStream_t stream = cuda_->side_stream.stream();
      if (cudaStreamIsCapturing(stream, &status) == cudaSuccess &&
          status != cudaStreamCaptureStatusNone) {
        cudaGraph_t partial = nullptr;
        cudaStreamEndCapture(stream, &partial);
        if (partial != nullptr) cudaGraphDestroy(partial);
      }
      (void)cudaGetLastError();
    }
  }
  if (!captured.ok() || drafter_->epoch() != epoch) {
    graphs_disabled_ = true;
    LOG(WARNING) << "device draft: CUDA graph capture failed ("
                 << (captured.ok() ? "the drafter's graphs changed" : captured.ToString())
                 << "); drafting without graphs";
    return false;
  }
  s.graph = std::move(graph);
  s.epoch = epoch;
  return true;
}

Result<std::vector<DraftTree>> DeviceDraftLoop::Draft(
    const Strategy& strategy, const std::vector<DeviceDraftRequest>& requests,
    const torch::Tensor& root_hidden, const torch::Tensor& root_logits) {
  const int64_t B = static_cast<int64_t>(requests.size()), k = strategy.top_k;
  const int64_t max_depth = MaxDepth(strategy);
  if (root_hidden.dim() != 2 || root_hidden.size(0) != B || root_logits.dim() != 2 ||
      root_logits.size(0) != B || root_logits.scalar_type() != torch::kFloat32 ||
      !root_logits.is_cuda()) {
    return InvalidArgument(
        "device draft: root_hidden [B, H] and float32 root_logits [B, V] "
        "on the device, one row per request");
  }
  const torch::Device device = root_logits.device();
  c10::cuda::CUDAGuard guard(device);
  try {
    std::unique_ptr<Shape>& slot = shapes_[std::make_tuple(B, k, max_depth)];
    if (!slot) {  // built whole before it enters the map (an allocation may throw)
      auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device);
      auto shape = std::make_unique<Shape>();
      Shape& s = *shape;
      s.batch = B;
      s.k = k;
      s.max_depth = max_depth;
      s.capacity = 1 + k + (max_depth - 1) * k * k;
      s.meta = torch::empty({3 * B}, i64);
      s.root_hidden = torch::empty({B, root_hidden.size(1)}, root_hidden.options());
      s.root_logits = torch::empty({B, root_logits.size(1)}, root_logits.options());
      s.candidates = torch::empty({B, 3, s.capacity}, i64.dtype(torch::kFloat64));
      s.frontier = torch::empty({B * k}, i64.dtype(torch::kInt32));
      s.frontier_mask = torch::empty({B * k}, i64);
      s.rows = torch::empty({models::CudaDecoder::kDeviceRowFields, B * k}, i64);
      s.gather = torch::empty({B * k}, i64);
      s.values = torch::empty({B * k, k}, i64.dtype(torch::kFloat32));
      s.ids = torch::empty({B * k, k}, i64);
      slot = std::move(shape);
    }
    Shape& s = *slot;
    std::vector<int64_t> meta;  // base, slot, root token: [3, B]
    for (const auto& r : requests) meta.push_back(r.base);
    for (const auto& r : requests) meta.push_back(r.slot);
    for (const auto& r : requests) meta.push_back(r.root_token);
    // Pinned and asynchronous: the host goes on queuing while the device finishes earlier work.
    s.meta.copy_(torch::tensor(meta, torch::kInt64).pin_memory(), /*non_blocking=*/true);
    s.root_hidden.copy_(root_hidden);
    s.root_logits.copy_(root_logits);
    RETURN_NOT_OK(drafter_->Refresh());
    const bool graphs = use_graphs_ && !graphs_disabled_;
    if (graphs && s.graph && s.epoch == drafter_->epoch()) {
      s.graph->replay();
    } else if (graphs && s.eager_runs > 0 && Capture(s)) {
      s.graph->replay();
    } else {
      RETURN_NOT_OK(RunLoop(s));
      ++s.eager_runs;
    }
    const torch::Tensor host = s.candidates.cpu();
    const double* data = host.data_ptr<double>();
    std::vector<DraftTree> trees;
    for (int64_t b = 0; b < B; ++b) {
      const double* tok = data + b * 3 * s.capacity;
      const double* par = tok + s.capacity;
      const double* sc = par + s.capacity;
      DraftTree cand = DraftTree::Root(static_cast<int64_t>(tok[0]));
      std::vector<double> scores{0.0};
      for (int64_t i = 1; i < s.capacity; ++i) {
        cand.Add(static_cast<int64_t>(par[i]), static_cast<int64_t>(tok[i]));
        scores.push_back(sc[i]);
      }
      trees.push_back(PruneCandidates(cand, scores, strategy.max_draft_tokens()));
    }
    return trees;
  } catch (const c10::Error& e) {
    return Internal(std::string("device draft: ") + e.what_without_backtrace());
  }
}

}  // namespace tlt::speculative
