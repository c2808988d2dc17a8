// The results file of `moetron run`: one HDF5 file holding the run's provenance, every request's
// tokens and timings, every engine step, expert load, a summary and (parallel runs) what each
// rank did. docs/results-schema.md is the contract: dataset and attribute names are stable.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "moetron/analysis/latency_summary.hpp"
#include "moetron/engine/finish_reason.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/io/output_file.hpp"  // check_output_writable: call it before the run
#include "moetron/version.hpp"

namespace moetron {

// Root attributes. model_config is JSON text (ModelConfig::to_json().dump()).
struct RunMetadata {
  std::string moetron_version = kVersion;
  std::string git_commit = kGitCommit;
  std::string command_line, host, device, backend, plan, model_config;
  std::string created_utc;  // ISO 8601 "YYYY-MM-DDTHH:MM:SSZ"; stamped at write time if empty
  std::map<std::string, std::string> extra;  // more string attributes; names must not clash
};

const char* finish_reason_name(FinishReason r);  // "length", "eos"

struct RequestResult {
  std::string id;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> output_tokens;
  std::vector<double> token_times_s;  // one per output token: seconds since the request arrived
  double ttft_s = 0;                  // arrival to first output token
  double e2e_s = 0;                   // arrival to completion
  double arrival_s = 0;  // seconds after the run started: as given, or when the request it follows finished
  double queue_s = 0;    // arrival to its first scheduled step
  FinishReason finish_reason = FinishReason::Length;
  int32_t preemptions = 0;  // times its KV cache was freed for others and recomputed
  // Empty, or the logits that chose each output token: [output_tokens.size(), logits_vocab_size]
  // row-major. Either every request keeps logits or none does.
  std::vector<float> logits;
};

struct StepRecord {
  int32_t batch_size = 0;   // sequences in the step
  int32_t num_tokens = 0;   // tokens processed (prompt tokens + one per decoding sequence)
  bool is_prefill = false;  // the step held prefill tokens
  double seconds = 0;
  int32_t prefill_budget = 0;  // prefill tokens the step could take beyond its decodes (0: whole prompts)
};

// What one MPI rank held and moved. Ranges are half-open [begin, end).
struct RankRecord {
  int64_t pp_rank = 0, dp_rank = 0, tp_rank = 0;
  int64_t layer_begin = 0, layer_end = 0;
  int64_t expert_begin = 0, expert_end = 0;
  int64_t q_head_begin = 0, q_head_end = 0;
  int64_t bytes_sent = 0, bytes_received = 0;
  std::string description;
  std::string host, device;  // where the rank ran, and on what (RunMetadata::device's words)
  int64_t expert_tokens = 0;  // token-slots its experts computed (ModelForward::expert_work)
  double expert_seconds = 0;  // the time its expert compute took
  // Time blocked in its groups' calls within decode / prefill steps (EngineReport's).
  double decode_comm_wait_seconds = 0, prefill_comm_wait_seconds = 0;
};

// The routing in detail, beside RunResults::expert_tokens (same layers and experts).
struct ExpertRouting {
  std::vector<int64_t> tokens_by_window;  // [windows, layers, experts]
  std::vector<int64_t> window_steps;      // [windows, 2]: each window's steps [first, end)
  std::vector<int64_t> coactivation;      // [layers, experts, experts], symmetric
};

// Start-up, part by part: for each part, the longest any rank took (ranks wait for the slowest).
struct StartupRecord {
  double weights_seconds = 0;     // reading the shard from the source and uploading it
  int64_t weights_bytes_read = 0; // the largest shard read, in the source's dtype
  double kv_cache_seconds = 0;    // sizing and allocating the KV cache
  double graphs_seconds = 0;      // recording the decode graphs (0 without graphs)
  int64_t graphs = 0;             // decode graphs recorded (batch-size buckets)
  double total_seconds = 0;       // the whole set-up, from the groups to the first step
  double warmup_seconds = 0;      // the warm-up forward (engine/warm_up.hpp; 0 without one)
};

// One plan of the job as the predictor saw it (rank 0, before the run): what it predicted, to
// hold against what the run measured.
struct PlanCandidateRecord {
  std::string plan;                // pp=P,tp=T,dp=D,ep=E
  bool fits = false;
  std::string refusal;             // why it does not fit ("" when it does)
  double output_tokens_per_s = 0;  // the ranking key: the workload's tokens over its time
  double decode_tokens_per_s = 0, prefill_tokens_per_s = 0;
  double decode_step_s = 0, ttft_s = 0, itl_s = 0;
  int64_t memory_per_rank = 0;     // bytes, the rank needing the most
  int64_t batch = 0;               // sequences per replica
  std::string bottleneck;          // largest part of the decode step
  // The bound no run beats (predict/predictor.hpp, assumption 14): the workload's throughput and
  // the decode step at the ceiling's figures; 0 where no ceiling was priced.
  double ceiling_output_tokens_per_s = 0, ceiling_decode_step_s = 0;
};

// Every plan predicted for this run, best first, and what the predictions rest on.
struct PlanPredictions {
  std::vector<PlanCandidateRecord> candidates;  // empty: none made (no /predictions group)
  std::string figures;                          // the hardware figures or profile used
  std::string chosen;                           // the plan that ran
  std::string explanation;                      // why the best wins ("" for an explicit --plan)
  double ranks_per_device = 1;                  // ranks the predictions had take turns on a device
};

// A group written by a layer above this one (io knows nothing of what it holds): the hardware
// profile the run measured for --plan auto (/profile, bench/profile_file.hpp's write_profile).
struct ResultsAttachment {
  std::string group;                                            // "/profile"
  std::function<void(h5::File&, const std::string&)> write;    // fills `group` (and makes it)
};

struct RunResults {
  RunMetadata meta;
  StartupRecord startup;
  PlanPredictions predictions;
  std::vector<RequestResult> requests;  // in prompts-file order
  std::vector<StepRecord> steps;
  // [layers][experts]: routed token-slots per layer and expert; rows of dense layers are zero.
  std::vector<std::vector<int64_t>> expert_tokens;
  ExpertRouting routing;  // empty vectors: written as zero windows and zero co-activation
  // --redundant-experts R > 0: each layer's R copies as (expert, ep set), [layers, R, 2], -1
  // where a layer has none (parallel/expert_replicas.hpp); R = 0: none (no dataset).
  int64_t redundant_experts = 0;
  std::vector<int64_t> replica_placement;
  int64_t logits_vocab_size = 0;  // width of RequestResult::logits rows; 0 when none are kept
  double total_seconds = 0;       // wall time of the generation (the summary's denominator)
  std::vector<RankRecord> ranks;  // one per MPI rank, in rank order; empty for a single process
  LatencySlo slo;                 // what goodput is judged against (--slo-ttft, --slo-itl)
  std::vector<ResultsAttachment> attachments;
};

// The /summary attributes, derived from RunResults so they can never disagree with the data.
struct RunSummary {
  double total_seconds = 0;
  int64_t requests = 0;
  int64_t output_tokens = 0;
  double output_tokens_per_s = 0;
  double total_tokens_per_s = 0;  // (prompt + output tokens) / total_seconds
  LatencySlo slo;
  LatencySummary latency;  // percentiles and goodput (analysis/latency_summary.hpp)
};
RunSummary summarize(const RunResults& r);

// Writes the file (one rank calls this). It goes to `path.tmp.<pid>`, is flushed to disk, and
// only then renamed to `path`; on failure the temporary file is removed and an Error names
// `path`. Inconsistent results (e.g. times not matching tokens) are an Error too.
void write_results(const std::string& path, const RunResults& results);

// A small reader for tests and tools. The stored type must match exactly.
std::vector<int32_t> read_int32(const std::string& path, const std::string& dataset);
std::vector<int64_t> read_int64(const std::string& path, const std::string& dataset);
std::vector<double> read_float64(const std::string& path, const std::string& dataset);
std::vector<float> read_float32(const std::string& path, const std::string& dataset,
                                std::vector<int64_t>* dims = nullptr);
std::vector<std::string> read_strings(const std::string& path, const std::string& dataset);
std::vector<int64_t> read_dims(const std::string& path, const std::string& dataset);
std::string read_string_attribute(const std::string& path, const std::string& object,
                                  const std::string& name);
double read_float64_attribute(const std::string& path, const std::string& object,
                              const std::string& name);
int64_t read_int64_attribute(const std::string& path, const std::string& object,
                             const std::string& name);

}  // namespace moetron
