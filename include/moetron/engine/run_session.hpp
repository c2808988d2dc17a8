// RunSession: one rank's whole `moetron run` after the options are parsed. It sets up, in this
// order, the parallel groups, the backend, the weights, the KV cache, the forward and the decode
// graphs, hands this replica its requests, runs the engine and brings together what the results
// file needs. The policies it applies are small pure functions below, tested on their own.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moetron/backend/ops.hpp"
#include "moetron/core/step_observer.hpp"
#include "moetron/engine/decode_graphs.hpp"
#include "moetron/engine/engine.hpp"
#include "moetron/engine/gather.hpp"
#include "moetron/engine/rank_emulation.hpp"
#include "moetron/io/prompts.hpp"
#include "moetron/io/results.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/routing_skew.hpp"
#include "moetron/model/weights.hpp"
#include "moetron/parallel/expert_replicas.hpp"
#include "moetron/parallel/groups.hpp"
#include "moetron/parallel/memory_need.hpp"

namespace moetron {

// ---- the policies ----

struct KvSizing {
  int64_t requested_tokens = 0;   // --kv-cache-tokens; 0: decide
  int64_t free_bytes = -1;        // Ops::free_memory_bytes(); -1: unknown (CPU)
  double memory_fraction = 0.9;   // --gpu-memory-fraction of free_bytes
  int64_t bytes_per_token = 0;    // kv_bytes_per_token (parallel/memory_need.hpp)
  int64_t block_size = 16;
};
// This rank's KV-cache tokens before the world agrees on the minimum: the request, else the
// fraction of free device memory, else (memory unknown) room for every request at full length
// plus one block each.
int64_t kv_cache_tokens(const KvSizing& s, const std::vector<RequestSpec>& requests);

// The KV-cache tokens a plan's memory check counts, before anything is allocated:
// requested_tokens (--kv-cache-tokens) when > 0; where the cache will be sized from free device
// memory (cuda), the least a run can proceed with: its longest request (prompt + max_new_tokens)
// plus one block; otherwise (cpu) what kv_cache_tokens will allocate.
int64_t kv_tokens_to_fit(int64_t requested_tokens, bool sized_from_free_memory, int64_t block_size,
                         const std::vector<RequestSpec>& requests);

// Tokens in the largest step: --max-batch-tokens, or one prompt longer than that alone.
int64_t max_step_tokens(int64_t max_batch_tokens, const std::vector<RequestSpec>& requests);

// Whether decode steps may be recorded as graphs: only where nothing in a step waits for the
// host: graphs not turned off, a backend that records, one pipeline stage, and the tp group and
// (several replicas) the stage group on a recordable transport ("" for a group the forward does
// not use). `why_not` gets the reason for the log when the answer is no.
bool can_record_decode(bool graphs_off, bool backend_records, int pp, const std::string& tp_transport,
                       const std::string& stage_transport, std::string* why_not);

// What a request leaves unset takes these (the command line's) values.
struct RequestDefaults {
  bool ignore_eos = false;
  SamplingParams sampling;  // seed: request i uses seed + i
};
// Which replica serves each request: round robin, in file order, over the requests that follow
// none; a request that follows another (`after`) goes where that one went, since only its own
// replica sees it finish. (Without `after`, request i goes to replica i % replicas.)
std::vector<int> replica_of_requests(const std::vector<RequestSpec>& requests, int replicas);
// Replica `replica`'s requests (replica_of_requests), in file order.
std::vector<Sequence> requests_for_replica(const std::vector<RequestSpec>& requests, int replicas,
                                           int replica, const RequestDefaults& defaults);

// The slowest rank's time for each part of start-up (collective over `world`).
StartupRecord slowest_startup(Communicator& world, const StartupRecord& mine);
// One log line: "startup: ready in ... s; weights ... GB read in ... s (... GB/s), ...".
std::string describe_startup(const StartupRecord& startup);

// ---- the session ----

struct RunSettings {
  std::string model_dir;
  bool dummy_weights = false;  // --load-format dummy: random weights from weights_seed
  RoutingSkew routing_skew;    // --routing-skew: biased routers (dummy weights only)
  int64_t routing_window = 0;  // --routing-window: steps per routing window (0: automatic)
  int64_t redundant_experts = 0;      // --redundant-experts R (0: none; needs ep > 1)
  std::vector<int64_t> expert_loads;  // [layers * E]: the loads that rank experts for the replicas
  uint64_t weights_seed = 0;
  Plan plan;
  int64_t max_batch = 256, max_batch_tokens = 8192, block_size = 16;
  int64_t prefill_chunk = 0;  // prefill tokens per step beyond the decodes (0: whole prompts; or kPrefillChunkAuto)
  double itl_target_ratio = 2.0;  // kPrefillChunkAuto: a step's time over a decode-only step's
  Admission admission = Admission::Continuous;  // --admission: when a waiting request may join a step
  int64_t kv_cache_tokens = 0;  // 0: from free memory
  double gpu_memory_fraction = 0.9;
  bool save_logits = false, no_graphs = false;
  bool warm_up = false;  // --warmup: one forward of the largest step before the first request (warm_up.hpp)
  RequestDefaults defaults;
  StepObserver* observer = nullptr;  // optional, on this rank
  Emulation emulation;               // --emulate-rank/--emulate-world: one rank of a larger plan
};

// How this rank reaches its device (engine/device_setup.hpp, which needs the CUDA build, fills
// it): the backend to make once the step arena's size is known, the device transports to put
// under the groups that carry device tensors, and the bound GPU's UUID (empty on the CPU).
struct DeviceAccess {
  std::function<std::unique_ptr<Ops>(size_t arena_bytes)> make_ops;
  std::function<void(ParallelGroups& groups, Ops& ops)> bind_transports;
  std::string gpu_uuid;
  int ranks_sharing_device = 1;  // ranks computing on this rank's GPU, itself included
  BackendStorage storage;  // what make_ops will hold, for sizing the step arena
};

// What a plan's memory check counts for this run on `backend` (cpu or cuda): settings' KV cache
// (kv_tokens_to_fit), block size, largest step and batch.
RunShape run_shape(const RunSettings& settings, const std::string& backend, const std::vector<RequestSpec>& requests);

struct RunOutcome {
  EngineReport report;
  std::vector<Sequence> finished;      // every replica's, on world rank 0; empty elsewhere
  std::vector<int64_t> expert_tokens;  // [layers * E], see gather_expert_tokens
  std::vector<int64_t> traffic;        // [world * 2], see gather_traffic
  RankPlaces places;                   // every rank's host and device, see gather_places
  StartupRecord startup;               // the slowest rank's set-up times (every rank has them)
  ExpertRouting routing;               // windows and co-activation, see gather_expert_routing
  RanksExpertWork expert_work;         // every rank's expert tokens and seconds
  RanksCommWait comm_wait;             // every rank's time blocked in communication
  std::vector<int64_t> replica_placement;  // [layers, R, 2] (RunResults::replica_placement)
};

class RunSession {
 public:
  // Sets everything up (collective over `world`); requests must be valid for config.
  RunSession(const ModelConfig& config, const std::vector<RequestSpec>& requests,
             const RunSettings& settings, const DeviceAccess& device, MPI_Comm world);
  ~RunSession();
  // Generates for this replica's requests and gathers the results (collective).
  RunOutcome run();

 private:
  void set_up_kv_cache();
  void set_up_graphs();
  void warm_up();

  const ModelConfig& config_;
  const std::vector<RequestSpec>& requests_;
  RunSettings settings_;
  ParallelGroups groups_;
  std::unique_ptr<Ops> ops_;
  std::string gpu_uuid_;
  int ranks_sharing_device_ = 1;
  MPI_Comm world_;
  ExpertReplicas replicas_;  // redundant experts (inactive without --redundant-experts)
  ModelWeights weights_;
  int64_t max_step_tokens_ = 0;
  int64_t kv_blocks_ = 0;
  ForwardContext forward_context_;
  std::unique_ptr<ModelForward> forward_;
  std::vector<Sequence> mine_;
  std::unique_ptr<DecodeGraphs> graphs_;
  StartupRecord startup_;  // this rank's until the constructor ends, then the slowest rank's
};

}  // namespace moetron
