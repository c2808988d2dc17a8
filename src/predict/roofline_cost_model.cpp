#include "moetron/predict/roofline_cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>

#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"

namespace moetron {

namespace {

constexpr double kBf16 = 2.0;
constexpr double kGB = 1e9, kUs = 1e-6, kGiB = 1024.0 * 1024.0 * 1024.0;

// Where the figures come from. GPU compute and HBM: the rooflines perf/RESULTS.md measured
// (bf16 GEMM of 8192^3, a 2 GiB device copy), or for the A100 about 93% of its data sheet, what
// cuBLAS reaches. Kernel gaps: perf/NOTES.md (327 kernels of a decode step on an H100 leave the GPU
// idle ~1.0 us each inside a graph, ~1.5 us eagerly). Links: nccl-tests busbw without NVLink
// multicast (NVLink 4: ~360 GB/s over 8 GPUs; NVLink 3: ~230), one 400 (200) Gb/s NIC per GPU
// across nodes (~45, ~23 GB/s); a hop's latency is a floor (2 us NVLink, 4 us InfiniBand).
// Memory: what nvidia-smi reports. cpu: one core-rich host running the float32 CPU backend
// over MPI in shared memory, deliberately generous (its floors must stay floors).
struct Preset {
  const char* name;
  HardwareFigures figures;
};

HardwareFigures figures(const char* name, double tflops, double hbm_tbps, double launch_us,
                        double graph_us, LinkFigures intra, LinkFigures inter, double memory_mib,
                        double reserved_gib, double cache_mib) {
  HardwareFigures f;
  f.name = name;
  f.gemm_flops = tflops * 1e12;
  f.hbm_bytes_per_s = hbm_tbps * 1e12;
  f.launch_s = launch_us * kUs;
  f.graph_node_s = graph_us * kUs;
  f.intra = intra;
  f.inter = inter;
  f.memory_bytes = static_cast<int64_t>(memory_mib * 1024 * 1024);
  f.reserved_bytes = static_cast<int64_t>(reserved_gib * kGiB);
  f.cache_bytes = static_cast<int64_t>(cache_mib * 1024 * 1024);
  return f;
}

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"h200", figures("h200", 751, 4.18, 1.5, 1.0, {360 * kGB, 2 * kUs}, {45 * kGB, 4 * kUs}, 143771, 1.0, 50)},
      {"h100", figures("h100", 790, 3.00, 1.5, 1.0, {360 * kGB, 2 * kUs}, {45 * kGB, 4 * kUs}, 81559, 1.0, 50)},
      {"a100", figures("a100", 290, 1.80, 2.0, 1.2, {230 * kGB, 2 * kUs}, {23 * kGB, 4 * kUs}, 81920, 1.0, 40)},
      {"cpu", figures("cpu", 0.2, 0.05, 0.1, 0.1, {10 * kGB, 1 * kUs}, {1.25 * kGB, 10 * kUs}, 16384, 0.0, 0)},
  };
  return all;
}

std::string names_joined() {
  std::string s;
  for (const std::string& n : hardware_preset_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// "key=value" pairs separated by commas; an Error names `option` for an entry without '='.
std::vector<std::pair<std::string, std::string>> key_values(const std::string& text,
                                                            const std::string& option) {
  std::vector<std::pair<std::string, std::string>> out;
  std::stringstream ss(text);
  std::string entry;
  while (std::getline(ss, entry, ',')) {
    const size_t eq = entry.find('=');
    MOETRON_CHECK(eq != std::string::npos && eq > 0,
                  option << ": '" << entry << "' is not key=value (in '" << text << "')");
    out.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  MOETRON_CHECK(!out.empty() && text.back() != ',', option << ": '" << text << "' has an empty entry");
  return out;
}

// A finite number >= 0 (> 0 when `positive`); the Error names `option` and `what`.
double parse_number(const std::string& text, const std::string& option, const std::string& what,
                    bool positive) {
  size_t end = 0;
  double v = 0;
  try {
    v = std::stod(text, &end);
  } catch (const std::exception&) {
    end = 0;
  }
  MOETRON_CHECK(end == text.size() && end > 0 && std::isfinite(v) && (positive ? v > 0 : v >= 0),
                option << ": " << what << " '" << text << "' is not a " << (positive ? "positive" : "non-negative")
                       << " number");
  return v;
}

}  // namespace

std::vector<std::string> hardware_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : presets()) names.push_back(p.name);
  return names;
}

HardwareFigures hardware_preset(const std::string& name, const std::string& option) {
  for (const Preset& p : presets())
    if (name == p.name) return p.figures;
  MOETRON_FAIL(option << ": unknown hardware '" << name << "' (known: " << names_joined() << ")");
}

void apply_interconnect(HardwareFigures& f, const std::string& text, const std::string& option) {
  for (const auto& [key, value] : key_values(text, option)) {
    MOETRON_CHECK(key == "intra" || key == "inter",
                  option << ": unknown link '" << key << "' (expected intra=GBps:us,inter=GBps:us)");
    const size_t colon = value.find(':');
    MOETRON_CHECK(colon != std::string::npos,
                  option << ": " << key << "='" << value << "' is not GBps:us (e.g. " << key << "=400:3)");
    LinkFigures& link = key == "intra" ? f.intra : f.inter;
    link.bytes_per_s = parse_number(value.substr(0, colon), option, key + " bandwidth", true) * kGB;
    link.latency_s = parse_number(value.substr(colon + 1), option, key + " latency", false) * kUs;
  }
  if (f.name.find('+') == std::string::npos) f.name += " + overrides";
}

void apply_hardware_overrides(HardwareFigures& f, const std::string& text, const std::string& option) {
  for (const auto& [key, value] : key_values(text, option)) {
    if (key == "gemm_tflops")
      f.gemm_flops = parse_number(value, option, key, true) * 1e12;
    else if (key == "hbm_tbps")
      f.hbm_bytes_per_s = parse_number(value, option, key, true) * 1e12;
    else if (key == "launch_us")
      f.launch_s = parse_number(value, option, key, false) * kUs;
    else if (key == "graph_node_us")
      f.graph_node_s = parse_number(value, option, key, false) * kUs;
    else if (key == "memory_gib")
      f.memory_bytes = static_cast<int64_t>(parse_number(value, option, key, true) * kGiB);
    else if (key == "reserved_gib")
      f.reserved_bytes = static_cast<int64_t>(parse_number(value, option, key, false) * kGiB);
    else if (key == "cache_mib")
      f.cache_bytes = static_cast<int64_t>(parse_number(value, option, key, false) * 1024 * 1024);
    else
      MOETRON_FAIL(option << ": unknown key '" << key
                          << "' (expected gemm_tflops, hbm_tbps, launch_us, graph_node_us, memory_gib, reserved_gib, "
                             "cache_mib)");
  }
  if (f.name.find('+') == std::string::npos) f.name += " + overrides";
}

std::string describe(const HardwareFigures& f) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s: %.3g TFLOP/s bf16, %.3g TB/s HBM, kernel gap %.1f us (graph %.1f us), "
                "links %.0f GB/s + %.1f us inside a node, %.1f GB/s + %.1f us across, memory %s",
                f.name.c_str(), f.gemm_flops / 1e12, f.hbm_bytes_per_s / 1e12, f.launch_s / kUs,
                f.graph_node_s / kUs, f.intra.bytes_per_s / kGB, f.intra.latency_s / kUs,
                f.inter.bytes_per_s / kGB, f.inter.latency_s / kUs,
                human_bytes(static_cast<double>(f.memory_bytes)).c_str());
  std::string out = buf;
  if (f.cache_bytes_per_s > 0) {
    std::snprintf(buf, sizeof buf, "; up to %s of a kernel's bytes at %.3g TB/s (cache)",
                  human_bytes(static_cast<double>(f.cache_bytes)).c_str(), f.cache_bytes_per_s / 1e12);
    out += buf;
  }
  return out;
}

RooflineCostModel::RooflineCostModel(HardwareFigures figures) : f_(std::move(figures)) {
  MOETRON_CHECK(f_.gemm_flops > 0 && f_.hbm_bytes_per_s > 0 && f_.intra.bytes_per_s > 0 &&
                    f_.inter.bytes_per_s > 0,
                "hardware " << f_.name << ": every rate must be positive");
  MOETRON_CHECK(f_.launch_s >= 0 && f_.graph_node_s >= 0 && f_.intra.latency_s >= 0 && f_.inter.latency_s >= 0,
                "hardware " << f_.name << ": no time may be negative");
  MOETRON_CHECK(f_.cache_bytes >= 0 && f_.cache_bytes_per_s >= 0, "hardware " << f_.name << ": no cache figure may be negative");
}

int collective_hops(int ranks) { return static_cast<int>(std::ceil(std::log2(static_cast<double>(ranks)))); }

KernelWork gemm_work(int64_t m, int64_t n, int64_t k) {
  const double M = static_cast<double>(m), N = static_cast<double>(n), K = static_cast<double>(k);
  return {2 * M * N * K, kBf16 * (M * K + K * N + M * N)};
}

KernelWork grouped_gemm_work(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k) {
  const double rows = static_cast<double>(tokens_per_expert) * static_cast<double>(experts);
  const double N = static_cast<double>(n), K = static_cast<double>(k);
  return {2 * rows * N * K, kBf16 * (static_cast<double>(experts) * K * N + rows * (K + N))};
}

KernelWork attention_work(int64_t rows, int64_t context, int64_t q_heads, int64_t kv_heads, int64_t head_dim,
                          bool prefill) {
  const double R = static_cast<double>(rows), C = static_cast<double>(context);
  const double q = static_cast<double>(q_heads * head_dim), kv = static_cast<double>(kv_heads * head_dim);
  const double seen = prefill ? (C + 1) / 2 : C;  // keys each query attends to
  const double kv_rows = prefill ? R : R * C;     // K/V rows read
  return {4 * R * seen * q, kBf16 * (2 * kv_rows * kv + 2 * R * q)};  // QK^T and PV
}

double RooflineCostModel::kernel_s(const KernelWork& work) const {
  double memory = work.bytes / f_.hbm_bytes_per_s;
  if (f_.cache_bytes_per_s > 0) {  // up to the cache's size at its rate, the rest from memory
    const double cached = std::min(work.bytes, static_cast<double>(f_.cache_bytes));
    memory = cached / f_.cache_bytes_per_s + (work.bytes - cached) / f_.hbm_bytes_per_s;
  }
  const double compute = work.flops / f_.gemm_flops;
  note_source(compute > memory ? "roofline, FLOP-bound" : "roofline, HBM-bound");
  return std::max(compute, memory);
}

const LinkFigures& RooflineCostModel::link(LinkScope scope) const {
  note_source(scope == LinkScope::IntraNode ? "roofline, link inside a node" : "roofline, link across nodes");
  return scope == LinkScope::IntraNode ? f_.intra : f_.inter;
}

double RooflineCostModel::gemm_s(int64_t m, int64_t n, int64_t k) const { return kernel_s(gemm_work(m, n, k)); }

double RooflineCostModel::grouped_gemm_s(int64_t tokens_per_expert, int64_t experts, int64_t n, int64_t k,
                                         int64_t /*call_tokens*/, bool /*by_gemms*/) const {
  return kernel_s(grouped_gemm_work(tokens_per_expert, experts, n, k));
}

double RooflineCostModel::attention_s(int64_t rows, int64_t context, int64_t q_heads,
                                      int64_t kv_heads, int64_t head_dim, bool prefill) const {
  return kernel_s(attention_work(rows, context, q_heads, kv_heads, head_dim, prefill));
}

double RooflineCostModel::memory_bound_s(int64_t bytes) const { return kernel_s({0, static_cast<double>(bytes)}); }

double RooflineCostModel::kernel_overhead_s(bool in_graph) const {
  note_source(in_graph ? "roofline graph node" : "roofline launch");
  return in_graph ? f_.graph_node_s : f_.launch_s;
}

double RooflineCostModel::allreduce_s(int64_t bytes, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const LinkFigures& l = link(scope);
  return collective_hops(ranks) * l.latency_s + 2.0 * (ranks - 1) / ranks * static_cast<double>(bytes) / l.bytes_per_s;
}

double RooflineCostModel::alltoall_s(int64_t bytes_per_rank, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const LinkFigures& l = link(scope);
  return l.latency_s + static_cast<double>(ranks - 1) / ranks * static_cast<double>(bytes_per_rank) / l.bytes_per_s;
}

double RooflineCostModel::send_recv_s(int64_t bytes, LinkScope scope) const {
  const LinkFigures& l = link(scope);
  return l.latency_s + static_cast<double>(bytes) / l.bytes_per_s;
}

double RooflineCostModel::broadcast_s(int64_t bytes, int ranks, LinkScope scope) const {
  if (ranks <= 1) return 0;
  const LinkFigures& l = link(scope);
  return collective_hops(ranks) * l.latency_s + static_cast<double>(bytes) / l.bytes_per_s;
}

}  // namespace moetron
