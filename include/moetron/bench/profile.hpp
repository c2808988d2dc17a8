// HardwareProfile: what `moetron bench` measured on one machine, with the model's own shapes, as
// tables of time against one size (tokens, bytes, ...) at fixed other parameters, and where it was
// measured. Pure data: measuring is bench/compute_bench.hpp and bench/comm_bench.hpp, the file is
// bench/profile_file.hpp (layout: docs/profile-schema.md), interpolation bench/time_curve.hpp.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/model/config.hpp"

namespace moetron {

// One measured point: the median over repetitions and the spread (10th and 90th percentiles).
struct Measurement {
  double median_s = 0, p10_s = 0, p90_s = 0;
};

// Time against one size at one key (the fixed parameters, named by the table's key_names).
struct Series {
  std::vector<int64_t> key;
  std::vector<int64_t> sizes;  // ascending
  std::vector<Measurement> times;
};

struct SeriesTable {
  std::vector<std::string> key_names;
  std::string size_name;
  std::vector<Series> series;

  const Series* find(const std::vector<int64_t>& key) const;  // nullptr when not measured
  // Appends a point to the series of `key` (made when new); sizes must come in ascending order.
  void add(const std::vector<int64_t>& key, int64_t size, const Measurement& m);
  // A second measurement of a point: kept where its median is the faster (added where the point
  // is new), for figures a busy host can only make slower (the launch gap).
  void keep_faster(const std::vector<int64_t>& key, int64_t size, const Measurement& m);
};

// The tables a profile may hold: name, key columns, size column. Collectives (allreduce,
// alltoall, send_recv, broadcast) are keyed by the group's ranks and whether it spans nodes.
struct TableSpec {
  const char* name;
  std::vector<std::string> key_names;
  const char* size_name;
};
namespace tables {
extern const TableSpec kGemm;              // key n, k; size tokens (m)
// The expert call on each side of the CUDA kernel switch (backend/expert_paths.hpp): kMoeExperts
// holds calls of more than kExpertGemvMaxTokens tokens (tensor-core tiles), kMoeExpertsGemv calls
// of at most that many (GEMVs), so that no interpolation mixes the two paths.
extern const TableSpec kMoeExperts;        // key hidden, expert_cols, experts; size tokens_per_expert
extern const TableSpec kMoeExpertsGemv;    // the same columns
extern const TableSpec kAttentionDecode;   // key q_heads, kv_heads, head_dim, context; size batch
extern const TableSpec kAttentionPrefill;  // key q_heads, kv_heads, head_dim, context; size rows
extern const TableSpec kMemoryBound;       // key kernel (kMemoryKernels); size bytes read + written
extern const TableSpec kHbmCopy;           // key buffers (1); size bytes read + written
extern const TableSpec kKernelGap;         // key in_graph (0, 1); size kernels (1)
// Ops a step runs once a layer or once a step that are not one memory-bound kernel on every
// backend (the CPU runs them as Ops' default composites: several ops and host-side math):
extern const TableSpec kAttentionInputs;   // key q_heads, kv_heads, head_dim; size tokens (QK-norm, RoPE, KV append)
extern const TableSpec kSampling;          // key vocab; size rows (greedy sampling, the ids to the host)
// The host's bookkeeping of one forward (engine.cpp's run_micro_batch): reset_temps, the batch
// layout built and uploaded, the step's routing counted (ModelForward::count_routing) over
// `layers` local layers. Not a kernel: priced as measured, without a kernel gap.
extern const TableSpec kHostStep;          // key experts, top_k, layers; size tokens (one a sequence)
// The host's time to enqueue one call of each op family (launch_family.hpp), timed without
// waiting for the device, where calls run asynchronously (a backend that records).
extern const TableSpec kLaunchCost;        // key op (LaunchFamily); size calls (1)
extern const TableSpec kAllreduce, kAlltoall, kSendRecv, kBroadcast;  // key ranks, spans_nodes; size bytes
const std::vector<const TableSpec*>& all();
}  // namespace tables
// The memory-bound kernels measured, in kMemoryBound's `kernel` order.
extern const std::vector<std::string> kMemoryKernels;  // add_inplace, rmsnorm, rope

// Where and how the profile was measured.
struct ProfileOrigin {
  std::string device;          // "NVIDIA H200" or the CPU's model name
  std::string driver;          // "CUDA driver 12080, runtime 13000" or "cpu"
  std::string backend;         // cpu or cuda
  std::string host;            // world rank 0's host
  std::string moetron_version, git_commit, created, command_line;
  int world_size = 1, ranks_per_node = 1, nodes = 1;
  int64_t memory_bytes = 0;    // memory a rank plans with (device memory, or host / node ranks)
  int warmup = 0, reps = 0;
  // Ops::kernel_settings of the ops measured ("" on CPU, and in profiles made before it was
  // recorded: then not checked).
  std::string kernels;
};

// The profile format this build writes. 3: where the backend records, calls shorter than a launch
// interval are timed as nodes of a replayed recording (bench_tensors.hpp), so a kernel's own time
// is its per-call time less a graph node's gap; 1 and 2 timed every call eagerly. 4: as 3, and
// on CUDA the expert calls of large experts take the per-expert GEMMs from 128 rows an expert;
// 3 and earlier took them from 256 only. 5: as 4, and from 256 rows only experts large enough or
// few enough to beat the tiles (ExpertGemmRule::kHostCost). The cost model files each format's
// points by the rule it was measured under (expert_gemm_rule_of_format).
constexpr int kProfileFormatVersion = 5;
inline ExpertGemmRule expert_gemm_rule_of_format(int format_version) {
  if (format_version <= 3) return ExpertGemmRule::kFrom256Rows;
  return format_version == 4 ? ExpertGemmRule::kLargeFrom128Rows : ExpertGemmRule::kHostCost;
}
// The rule a profile's points ran under: its `kernels` say which prefill path the engine took
// (expert_gemm=wgmma+cublas: the Hopper default's cuBLAS calls only; wgmma or tiles: none);
// `cublas`, or no record (the CPU, older profiles), the format's rule.
ExpertGemmRule expert_gemm_rule_of_profile(int format_version, const std::string& kernels);

struct HardwareProfile {
  ProfileOrigin origin;
  int format_version = kProfileFormatVersion;  // what the file was written as (older files are read)
  std::map<std::string, int64_t> model_shapes;  // profile_model_shapes(config)
  std::map<std::string, SeriesTable> tables;    // by TableSpec name; absent when not measured

  // The table of `spec`, made empty with spec's columns when absent.
  SeriesTable& table(const TableSpec& spec);
  const SeriesTable* find(const TableSpec& spec) const;  // nullptr when absent
};

// The shapes of a model that a profile's measurements depend on, by config.json-like name.
std::map<std::string, int64_t> profile_model_shapes(const ModelConfig& config);

}  // namespace moetron
