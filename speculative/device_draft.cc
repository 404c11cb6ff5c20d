// DraftOnDevice (device_draft.h). Compiled only with the fused CUDA decoder (gpu/ kernels).
#include "speculative/device_draft.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
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

Result<std::vector<DraftTree>> DraftOnDevice(models::CudaDecoder& drafter, const Strategy& strategy,
                                             const std::vector<DeviceDraftRequest>& requests,
                                             const torch::Tensor& root_hidden,
                                             const torch::Tensor& root_logits) {
  const int64_t B = static_cast<int64_t>(requests.size()), k = strategy.top_k;
  const int64_t max_depth = MaxDepth(strategy);
  const int64_t capacity = 1 + k + (max_depth - 1) * k * k;
  if (root_hidden.dim() != 2 || root_hidden.size(0) != B || root_logits.dim() != 2 ||
      root_logits.size(0) != B || root_logits.scalar_type() != torch::kFloat32 ||
      !root_logits.is_cuda()) {
    return InvalidArgument(
        "device draft: root_hidden [B, H] and float32 root_logits [B, V] "
        "on the device, one row per request");
  }
  const torch::Device device = root_logits.device();
  c10::cuda::CUDAGuard guard(device);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  auto i64 = torch::TensorOptions().dtype(torch::kInt64).device(device);
  std::vector<int64_t> meta;  // base, slot, root token: [3, B]
  for (const auto& r : requests) meta.push_back(r.base);
  for (const auto& r : requests) meta.push_back(r.slot);
  for (const auto& r : requests) meta.push_back(r.root_token);
  const torch::Tensor meta_d = torch::tensor(meta, torch::kInt64).to(device);
  torch::Tensor candidates = torch::empty({B, 3, capacity}, i64.dtype(torch::kFloat64));
  torch::Tensor frontier = torch::empty({B * k}, i64.dtype(torch::kInt32));
  torch::Tensor frontier_mask = torch::empty({B * k}, i64);
  torch::Tensor rows = torch::empty({models::CudaDecoder::kDeviceRowFields, B * k}, i64);
  torch::Tensor gather = torch::empty({B * k}, i64);
  torch::Tensor values = torch::empty({B * k, k}, i64.dtype(torch::kFloat32));
  torch::Tensor ids = torch::empty({B * k, k}, i64);
  static_assert(models::CudaDecoder::kDeviceRowFields == kTltDraftRowFields,
                "the expansion writes the decoder's device-row layout");

  TltDraftExpandParams p{};
  p.requests = B;
  p.k = static_cast<int>(k);
  p.values = values.data_ptr<float>();
  p.ids = ids.data_ptr<int64_t>();
  p.base = meta_d.data_ptr<int64_t>();
  p.slot = p.base + B;
  p.root_token = p.base + 2 * B;
  p.candidates = candidates.data_ptr<double>();
  p.capacity = capacity;
  p.frontier = frontier.data_ptr<int32_t>();
  p.frontier_mask = frontier_mask.data_ptr<int64_t>();
  p.rows = rows.data_ptr<int64_t>();
  p.gather = gather.data_ptr<int64_t>();

  const torch::Tensor logits0 = root_logits.contiguous();
  RETURN_NOT_OK(CudaStatus(TltDraftTopK(logits0.data_ptr<float>(), B, logits0.size(1), p.k,
                                        values.data_ptr<float>(), ids.data_ptr<int64_t>(), stream),
                           "root top-k"));
  p.depth = 0;
  RETURN_NOT_OK(CudaStatus(TltDraftExpand(&p, stream), "root expansion"));
  torch::Tensor source = root_hidden;  // the hidden states the next rows gather from
  for (int64_t depth = 1; depth < max_depth; ++depth) {
    const torch::Tensor hidden_in = source.index_select(0, gather);
    ASSIGN_OR_RETURN(models::StepTensors out, drafter.ForwardDeviceRows(rows, hidden_in));
    RETURN_NOT_OK(
        CudaStatus(TltDraftTopK(out.logits.data_ptr<float>(), B * k, out.logits.size(1), p.k,
                                values.data_ptr<float>(), ids.data_ptr<int64_t>(), stream),
                   "top-k"));
    p.depth = static_cast<int>(depth);
    RETURN_NOT_OK(CudaStatus(TltDraftExpand(&p, stream), "expansion"));
    source = out.hidden;  // read by the next index_select, before the next step rewrites it
  }
  const torch::Tensor host = candidates.cpu();
  const double* data = host.data_ptr<double>();
  std::vector<DraftTree> trees;
  for (int64_t b = 0; b < B; ++b) {
    const double* tok = data + b * 3 * capacity;
    const double* par = tok + capacity;
    const double* sc = par + capacity;
    DraftTree cand = DraftTree::Root(static_cast<int64_t>(tok[0]));
    std::vector<double> scores{0.0};
    for (int64_t i = 1; i < capacity; ++i) {
      cand.Add(static_cast<int64_t>(par[i]), static_cast<int64_t>(tok[i]));
      scores.push_back(sc[i]);
    }
    trees.push_back(PruneCandidates(cand, scores, strategy.max_draft_tokens()));
  }
  return trees;
}

}  // namespace tlt::speculative
