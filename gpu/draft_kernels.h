// Kernels of the on-device drafting loop (speculative/device_draft.h): the draft top-k of each
// drafter row and one EAGLE-2 tree expansion step per request, so that a whole draft tree is
// grown on the GPU and comes to the host in one copy at the end.
//
// A C interface on raw device pointers and a cudaStream_t (as gpu/decode_kernels.h). Launch
// errors come back as cudaError_t, unsupported arguments as cudaErrorInvalidValue.
//
// The tree follows speculative/strategy.h (DraftTreeBuilder), with top-k width k (1..16):
// candidate 0 of a request is the root; the root's k best draft tokens are candidates 1..k
// (depth 1); each further depth adds k children to each of the k frontier nodes (k^2 new
// candidates, in frontier order, each node's children by descending log-prob) and the next
// frontier is the k new candidates with the best cumulative log-prob (ties: the earlier
// candidate), kept in index order. A candidate's score is its parent's score plus its own draft
// log-prob, summed in float64 as DraftTreeBuilder does. Unlike DraftTreeBuilder, candidates with
// a non-finite log-prob are kept (with that score); callers use these kernels only where the
// vocabulary has at least k tokens.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

extern "C" {

// For each of `rows` rows of float32 logits [rows, vocab]: the k largest log_softmax values,
// descending (ties: the lower token id first), into values [rows, k] (float32) and their token
// ids into ids [rows, k] (int64), computed as LibTorch's log_softmax does ((x - max) - log(sum
// exp(x - max)), float32). NaN logits count as -inf; a row without a finite log-prob yields
// -inf values. 1 <= k <= 16, k <= vocab.
cudaError_t TltDraftTopK(const float* logits, int64_t rows, int64_t vocab, int k, float* values,
                         int64_t* ids, cudaStream_t stream);

// The fields of one drafter row as the expansion writes them: int64 [kTltDraftRowFields, R]
// (row-major; R = requests * k), each field a row of R values.
enum TltDraftRowField {
  kTltDraftRowToken = 0,     // the frontier node's token (the drafter input x_{t+1})
  kTltDraftRowPosition = 1,  // drafter cache write position: base + (depth - 1) * k + index
  kTltDraftRowSlot = 2,      // drafter cache slot
  kTltDraftRowRotary = 3,    // rotary position: base - 1 + depth
  kTltDraftRowTreeBase = 4,  // base (the request's fed drafter positions)
  kTltDraftRowTreeMask = 5,  // bit i: the node at base + i is an ancestor
  kTltDraftRowFields = 6
};

struct TltDraftExpandParams {
  int64_t requests;  // B
  int k;             // top-k width, 1..16
  // Depth of the nodes whose top-k is in values/ids: 0 = the roots (values/ids [B, k], one row
  // per request), d >= 1 = the frontier drafted at depth d (values/ids [B * k, k]: row
  // b * k + j is frontier node j of request b).
  int depth;
  const float* values;
  const int64_t* ids;
  // Per request (int64 [B] each): fed drafter positions, drafter slot, root token.
  const int64_t* base;
  const int64_t* slot;
  const int64_t* root_token;
  // The candidates so far, per request `capacity` entries (capacity >= 1 + k + depth * k^2):
  // token, parent (-1 for the root) and score, as float64 (token ids and indices are exact).
  // Depth 0 writes the root and its children; depth d appends the k^2 children of the frontier.
  double* candidates;  // [B, 3, capacity]
  int64_t capacity;
  // Frontier state between calls: candidate index and ancestor mask (bits as in the rows) of
  // frontier node j of request b at [b * k + j]. Read at depth >= 1, rewritten every call.
  int32_t* frontier;
  int64_t* frontier_mask;
  // Outputs: the next depth's drafter rows (see TltDraftRowField) and, per row, the row of this
  // call's drafter output (depth 0: the request) whose predicted hidden state it takes as input.
  int64_t* rows;    // int64 [kTltDraftRowFields, B * k]
  int64_t* gather;  // int64 [B * k]
};

cudaError_t TltDraftExpand(const struct TltDraftExpandParams* params, cudaStream_t stream);

}  // extern "C"
