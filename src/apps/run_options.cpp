#include "run_options.hpp"

#include <cmath>

#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/engine/prefill_budget.hpp"
#include "moetron/io/input_files.hpp"
#include "moetron/model/routing_skew.hpp"

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

// As a prompt's "seed": an integer in [0, 2^64). Boost would read "-1" as 2^64 - 1.
uint64_t parse_seed(const std::string& text) {
  const std::optional<uint64_t> v = parse_decimal(text);
  MOETRON_CHECK(v.has_value(), "--seed must be an integer >= 0 (below 2^64), got '" << text << "'");
  return *v;
}

// An option read as text, shown with `shown` as its default, and parsed into `field` (the
// parser's error names the option).
template <typename T, typename Parse>
po::typed_value<std::string>* parsed_into(T& field, const std::string& shown, Parse parse) {
  return po::value<std::string>()->default_value(shown)->notifier([&field, parse](const std::string& s) {
    field = parse(s);
  });
}

// The service-level objective goodput is judged by (analysis/latency_summary.hpp).
void add_slo_options(po::options_description& d, RunOptions& o) {
  d.add_options()
      ("slo-ttft", po::value(&o.slo.ttft_s)->default_value(o.slo.ttft_s),
       "seconds: a request meets the SLO when its time to first token is at most this and ...")
      ("slo-itl", po::value(&o.slo.itl_s)->default_value(o.slo.itl_s),
       "... its mean inter-token latency at most this many seconds; goodput (/summary) counts such "
       "requests per second");
}

}  // namespace

po::options_description run_options(RunOptions& o) {
  po::options_description d("moetron run [options]");
  d.add_options()
      ("help,h", "describe the options")
      ("model", po::value(&o.model)->required(), "checkpoint directory (config.json + *.safetensors)")
      ("prompts", po::value(&o.prompts)->required(), "JSON Lines file, one request a line")
      ("out", po::value(&o.out)->required(), "results file (HDF5), written atomically")
      ("max-new-tokens", po::value(&o.max_new_tokens)->default_value(o.max_new_tokens),
       "tokens to generate for requests that give no max_new_tokens")
      ("ignore-eos", po::bool_switch(&o.ignore_eos), "do not stop at the EOS token")
      ("save-logits", po::bool_switch(&o.save_logits),
       "store the logits that chose each generated token (/requests/logits)")
      ("backend", po::value(&o.backend)->default_value(o.backend),
       "cpu, cuda, or auto (cuda where a GPU is present, else cpu)")
      ("plan", po::value(&o.plan)->default_value(o.plan),
       "parallel plan: auto (rank 0 predicts every plan and takes the best), or pp=P,tp=T,dp=D,ep=E[,mb=M] "
       "(omitted factors are 1; mb: micro-batches a step through a pipeline, pp when omitted)")
      ("profile", po::value(&o.profile),
       "with --plan auto: predict from this `moetron bench` profile (measured for this model, world, "
       "device and kernels), or the one a results file of an earlier --plan auto run keeps (/profile), "
       "instead of measuring one first (--bootstrap-bench)")
      ("bootstrap-bench", po::value(&o.bootstrap_bench)->default_value(o.bootstrap_bench),
       "with --plan auto on more than one rank and no --profile: what rank 0 measures before it "
       "predicts (compute on its device, collectives over every rank): full (`moetron bench`'s "
       "defaults), quick (its --quick) or off (the device's roofline figures); the profile is kept "
       "in the results file (/profile)")
      ("temperature", po::value(&o.temperature)->default_value(o.temperature), "0: greedy")
      ("top-k", po::value(&o.top_k)->default_value(o.top_k), "0: off")
      ("top-p", po::value(&o.top_p)->default_value(o.top_p), "1: off")
      ("seed", parsed_into(o.seed, std::to_string(o.seed), parse_seed),
       "sampling seed (an integer >= 0); request i uses seed + i unless it gives its own")
      ("max-batch", po::value(&o.max_batch)->default_value(o.max_batch),
       "most sequences in one step")
      ("max-batch-tokens", po::value(&o.max_batch_tokens)->default_value(o.max_batch_tokens),
       "most tokens in one step (prompt tokens count here)")
      ("prefill-chunk", parsed_into(o.prefill_chunk, prefill_chunk_text(o.prefill_chunk), parse_prefill_chunk),
       "chunked prefill: a step takes at most N prompt tokens beyond its decodes, so a long prompt is "
       "prefilled over several steps while the running requests keep decoding (0: whole prompts, each "
       "in one step); auto: N chosen each step from the measured step times, so that the step takes at "
       "most --itl-target-ratio times a decode-only step of its decode batch")
      ("itl-target-ratio", po::value<double>()->notifier([&o](double r) {
         o.itl_target_ratio = r, o.itl_target_ratio_given = true;
       }),
       "with --prefill-chunk auto: the most a step that takes prefill may last over a decode-only step of "
       "the same decode batch (> 1; default 2)")
      ("admission", parsed_into(o.admission, admission_text(o.admission), parse_admission),
       "continuous: a waiting request joins any step with room, its prefill beside the running requests' "
       "decodes; static: requests are admitted only when none is running, as a group (within --max-batch "
       "and --max-batch-tokens) that is prefilled, then decoded together until its last request finishes, "
       "so no step holds both prefill and decodes (a request preempted meanwhile is recomputed with the "
       "next group)")
      ("kv-cache-tokens", po::value(&o.kv_cache_tokens)->default_value(o.kv_cache_tokens),
       "KV-cache capacity in tokens per replica (0: sized from free memory, or from the requests on the CPU)")
      ("block-size", po::value(&o.block_size)->default_value(o.block_size), "tokens per KV-cache block")
      ("memory-per-rank", po::value(&o.memory_per_rank)->default_value(o.memory_per_rank),
       "bytes of memory each rank may fill with its weights, KV cache and activations (0: the GPU's "
       "free memory, or the host's memory shared by the node's ranks); plans that do not fit are refused")
      ("gpu-memory-fraction", po::value(&o.gpu_memory_fraction)->default_value(o.gpu_memory_fraction),
       "share of free GPU memory the KV cache may take")
      ("load-format", po::value(&o.load_format)->default_value(o.load_format),
       "auto|safetensors: read the checkpoint; dummy: only config.json, deterministic random weights")
      ("no-graphs", po::bool_switch(&o.no_graphs), "run the decode step eagerly (no CUDA graphs)")
      ("warmup", po::value(&o.warmup)->default_value(o.warmup),
       "auto|on|off: run one forward of the largest prefill step (and of the largest batch where "
       "decode runs eagerly) before the first request, so the GPU's first-use costs are startup time "
       "and not the first requests' TTFT (auto: on for the cuda backend)")
      ("measure-gpu-idle", po::bool_switch(&o.measure_gpu_idle),
       "trace rank 0's GPU with CUPTI and report how long it idles within decode steps (cuda backend)")
      ("profile-decode-steps", po::value(&o.profile_decode_steps),
       "FIRST:COUNT: open the CUDA profiler's capture window around decode steps FIRST to "
       "FIRST+COUNT-1 (from 0) on rank 0, for `ncu --profile-from-start off` (cuda backend)")
      ("collective-timeout", po::value(&o.collective_timeout)->default_value(o.collective_timeout),
       "seconds a collective may wait for the other ranks before the job ends naming the ranks "
       "that did not arrive (0: wait forever)")
      ("routing-skew", po::value(&o.routing_skew),
       "with --load-format dummy: bias the routers so expert loads follow zipf:S (share of the r-th "
       "hottest expert ~ r^-S) or hot:K:F (a fraction F of the token-slots to K experts)")
      ("routing-window", po::value(&o.routing_window)->default_value(o.routing_window),
       "steps per window of /experts/tokens_by_window (0: automatic, windows doubled so the record stays "
       "within 16 MiB)")
      ("redundant-experts", po::value(&o.redundant_experts)->default_value(o.redundant_experts),
       "R extra copies of each MoE layer's hottest experts on the least-loaded expert-parallel sets, each "
       "copy taking a share of its expert's tokens (tokens are unchanged); R in [0, experts]; needs a plan "
       "with ep > 1 (refused otherwise). The loads come from --expert-loads, else from a warm-up run of the "
       "requests (each cut to 4 new tokens) before the run")
      ("expert-loads", po::value(&o.expert_loads),
       "a previous Moetron results file whose /experts/tokens (layers x experts of this model) ranks the "
       "experts for --redundant-experts")
      ("emulate-rank", po::value<int>()->notifier([&o](int r) { o.emulate_rank = r, o.emulate_rank_given = true; }),
       "run only this rank's share of the --plan's work (its layers, heads, experts and the expert tokens it "
       "would receive) in one process, each collective a local copy of the same size; records its step times")
      ("emulate-world", po::value<int>()->notifier([&o](int n) { o.emulate_world = n, o.emulate_world_given = true; }),
       "with --emulate-rank: the ranks of the plan being emulated (pp x tp x dp of --plan)")
      ("emulate-peers",
       po::value<std::string>()->notifier([&o](const std::string& m) { o.emulate_peers = m, o.emulate_peers_given = true; }),
       "with --emulate-rank: how the emulated expert-parallel peers route what they send this rank: rotated "
       "(default: this rank's picks moved within each EP set by the peer's distance, as replicas serving other "
       "requests spread a set's load), spread (moved as many sets on too: a set's load as distinct requests "
       "give it under uniform routing, its skew flattened) or same (every peer picks this rank's experts: exact "
       "when every replica gets the same requests)")
      ("log-level", po::value(&o.log_level)->default_value(o.log_level), "debug, info, warn, error or off");
  add_slo_options(d, o);
  return d;
}

void check_options(const RunOptions& o) {
  MOETRON_CHECK(o.backend == "auto" || o.backend == "cpu" || o.backend == "cuda",
                "--backend: unknown backend '" << o.backend << "' (expected cpu, cuda or auto)");
  MOETRON_CHECK(o.load_format == "auto" || o.load_format == "safetensors" || o.load_format == "dummy",
                "--load-format: unknown format '" << o.load_format << "' (expected auto, safetensors or dummy)");
  MOETRON_CHECK(o.max_new_tokens >= 1, "--max-new-tokens must be at least 1");
  MOETRON_CHECK(o.temperature >= 0, "--temperature must be >= 0");
  MOETRON_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1]");
  MOETRON_CHECK(o.top_k >= 0, "--top-k must be >= 0");
  MOETRON_CHECK(o.max_batch >= 1, "--max-batch must be at least 1");
  MOETRON_CHECK(o.max_batch_tokens >= 1, "--max-batch-tokens must be at least 1");
  MOETRON_CHECK(std::isfinite(o.itl_target_ratio) && o.itl_target_ratio > 1,
                "--itl-target-ratio must be a number > 1, got " << o.itl_target_ratio);
  MOETRON_CHECK(!o.itl_target_ratio_given || o.prefill_chunk == kPrefillChunkAuto,
                "--itl-target-ratio sizes adaptive chunks: it needs --prefill-chunk auto");
  MOETRON_CHECK(o.warmup == "auto" || o.warmup == "on" || o.warmup == "off",
                "--warmup must be auto, on or off, got '" << o.warmup << "'");
  MOETRON_CHECK(o.bootstrap_bench == "full" || o.bootstrap_bench == "quick" || o.bootstrap_bench == "off",
                "--bootstrap-bench must be full, quick or off, got '" << o.bootstrap_bench << "'");
  MOETRON_CHECK(o.bootstrap_bench == "full" || (o.plan == "auto" && o.profile.empty()),
                "--bootstrap-bench " << o.bootstrap_bench << " is only read with --plan auto and no --profile");
  MOETRON_CHECK(o.kv_cache_tokens >= 0, "--kv-cache-tokens must be >= 0");
  MOETRON_CHECK(o.memory_per_rank >= 0, "--memory-per-rank must be >= 0");
  MOETRON_CHECK(o.block_size >= 1 && o.block_size <= 1024, "--block-size must be in [1, 1024]");
  MOETRON_CHECK(o.kv_cache_tokens == 0 || o.kv_cache_tokens >= o.block_size,
                "--kv-cache-tokens (" << o.kv_cache_tokens << ") is less than one KV-cache block (--block-size "
                                      << o.block_size << " tokens)");
  MOETRON_CHECK(o.gpu_memory_fraction > 0 && o.gpu_memory_fraction <= 1,
                "--gpu-memory-fraction must be in (0, 1]");
  MOETRON_CHECK(o.routing_window >= 0, "--routing-window must be >= 0 (0: automatic), got " << o.routing_window);
  if (!o.routing_skew.empty()) {
    MOETRON_CHECK(o.load_format == "dummy", "--routing-skew biases random routers: it needs --load-format dummy");
    parse_routing_skew(o.routing_skew);  // refuses a malformed law before anything starts
  }
  MOETRON_CHECK(o.redundant_experts >= 0, "--redundant-experts must be >= 0, got " << o.redundant_experts);
  MOETRON_CHECK(o.expert_loads.empty() || o.redundant_experts > 0,
                "--expert-loads " << o.expert_loads << " is only read with --redundant-experts > 0");
  MOETRON_CHECK(std::isfinite(o.collective_timeout) && o.collective_timeout >= 0 &&
                    o.collective_timeout <= kMaxCollectiveTimeoutS,
                "--collective-timeout must be 0 (off) or seconds up to " << kMaxCollectiveTimeoutS << ", got "
                                                                        << o.collective_timeout);
  MOETRON_CHECK(std::isfinite(o.slo.ttft_s) && o.slo.ttft_s > 0, "--slo-ttft must be seconds > 0, got " << o.slo.ttft_s);
  MOETRON_CHECK(std::isfinite(o.slo.itl_s) && o.slo.itl_s > 0, "--slo-itl must be seconds > 0, got " << o.slo.itl_s);
}

std::vector<std::string> run_input_files(const RunOptions& o) {
  std::vector<std::string> inputs = files_in_directory(o.model);
  inputs.push_back(o.prompts);
  if (!o.profile.empty()) inputs.push_back(o.profile);
  if (!o.expert_loads.empty()) inputs.push_back(o.expert_loads);
  return inputs;
}

}  // namespace moetron::apps
