// The options of `moetron run`, parsed with Boost.Program_options and checked.
#pragma once
#include <boost/program_options.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "moetron/analysis/latency_summary.hpp"
#include "moetron/comm/collective_watchdog.hpp"
#include "moetron/engine/scheduler.hpp"

namespace moetron::apps {

struct RunOptions {
  std::string model, prompts, out, backend = "auto", plan = "auto", load_format = "auto";
  std::string profile;  // --profile: `moetron bench` results that --plan auto predicts from
  // --bootstrap-bench full|quick|off: what rank 0 measures before --plan auto chooses among
  // several ranks' plans when no --profile is given.
  std::string bootstrap_bench = "full";
  // --warmup auto|on|off: one forward of the largest step before the first request (auto: on
  // where kernels load at their first use, the cuda backend).
  std::string warmup = "auto";
  std::string log_level = "info";
  int64_t max_new_tokens = 64;
  bool ignore_eos = false, save_logits = false, no_graphs = false, measure_gpu_idle = false;
  std::string profile_decode_steps;  // --profile-decode-steps FIRST:COUNT ("": none)
  float temperature = 0.0f, top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  int64_t max_batch = 256, max_batch_tokens = 8192, kv_cache_tokens = 0, block_size = 16;
  // --prefill-chunk N: prefill tokens per step beyond the decodes (0: whole prompts), or auto
  // (kPrefillChunkAuto): sized each step to keep it within --itl-target-ratio of a decode step.
  int64_t prefill_chunk = 0;
  double itl_target_ratio = 2.0;
  bool itl_target_ratio_given = false;
  // --admission continuous|static: when a waiting request may join a step (engine/scheduler.hpp).
  Admission admission = Admission::Continuous;
  double gpu_memory_fraction = 0.9;
  int64_t memory_per_rank = 0;
  double collective_timeout = kDefaultCollectiveTimeoutS;  // seconds; 0: off
  std::string routing_skew;    // --routing-skew zipf:S | hot:K:F ("" : none)
  int64_t routing_window = 0;  // --routing-window W (0: automatic)
  int64_t redundant_experts = 0;  // --redundant-experts R
  std::string expert_loads;       // --expert-loads FILE.h5 ("": none)
  // --emulate-rank R --emulate-world N: run rank R's share of an N-rank plan in this process.
  int emulate_rank = -1, emulate_world = 0;
  bool emulate_rank_given = false, emulate_world_given = false;
  std::string emulate_peers = "rotated";  // --emulate-peers (rank_emulation.hpp's EmulatedPeers)
  bool emulate_peers_given = false;
  std::string command_line;
  LatencySlo slo;  // --slo-ttft, --slo-itl
};

boost::program_options::options_description run_options(RunOptions& o);
// Throws Error naming the option for a value out of range.
void check_options(const RunOptions& o);
// The files a run reads: the prompts file and every file of the checkpoint directory.
std::vector<std::string> run_input_files(const RunOptions& o);

}  // namespace moetron::apps
