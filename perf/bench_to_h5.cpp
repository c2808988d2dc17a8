// bench_to_h5 OUT.h5 RESULTS.json...: the benchmark table (perf/bench.py's JSON files) as HDF5,
// one group per model and device ("/olmoe-1b-7b@NVIDIA H100 80GB HBM3"), one float64 dataset
// per column indexed by batch size (NaN where a figure was not measured), the run's measured
// rooflines and date as attributes. Written to a temporary name and renamed when complete.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "moetron/io/hdf5.hpp"

namespace {

using Json = nlohmann::json;

double field(const Json& r, const char* key) {
  return r.contains(key) && r[key].is_number() ? r[key].get<double>() : NAN;
}

// Records of the prefill and startup tables carry no decode batch (hf-prefill's is HF's own).
bool decode_record(const Json& r) {
  const std::string engine = r.value("engine", "");
  return engine != "hf-prefill" && engine != "moetron-prefill" && engine != "moetron-startup";
}

const Json* find_record(const std::vector<Json>& rows, const char* engine, const char* key, int64_t value) {
  for (const Json& r : rows)
    if (r.value("engine", "") == engine && r.value(key, int64_t{-1}) == value) return &r;
  return nullptr;
}

// GROUP/prefill: one row per prompt length, Moetron's and HF's prompt tokens per second.
void write_prefill(moetron::h5::File& f, const std::string& group, const std::vector<Json>& rows) {
  std::set<int64_t> prompts;
  for (const Json& r : rows)
    if (r.value("engine", "") == "moetron-prefill") prompts.insert(r.value("prompt", int64_t{0}));
  if (prompts.empty()) return;
  const std::string g = group + "/prefill";
  f.create_group(g);
  f.write(g + "/prompt", std::vector<int64_t>(prompts.begin(), prompts.end()));
  const std::vector<std::tuple<const char*, const char*, const char*>> columns = {
      {"moetron_tok_s", "moetron-prefill", "prefill_tok_s"},
      {"moetron_fraction_of_gemm_rate", "moetron-prefill", "fraction_of_gemm_rate"},
      {"hf_tok_s", "hf-prefill", "prefill_tok_s"},
      {"hf_fraction_of_gemm_rate", "hf-prefill", "fraction_of_gemm_rate"},
      {"hf_batch", "hf-prefill", "batch"}};
  for (const auto& [name, engine, key] : columns) {
    std::vector<double> values;
    for (int64_t p : prompts) {
      const Json* r = find_record(rows, engine, "prompt", p);
      values.push_back(r ? field(*r, key) : NAN);
    }
    f.write(g + "/" + name, values);
  }
}

// GROUP/startup: the cold start's figures as attributes (seconds, bytes, bytes per second).
void write_startup(moetron::h5::File& f, const std::string& group, const std::vector<Json>& rows) {
  for (const Json& r : rows) {
    if (r.value("engine", "") != "moetron-startup") continue;
    const std::string g = group + "/startup";
    f.create_group(g);
    for (const auto& [key, value] : r.items())
      if (value.is_number()) f.set_attribute(g, key, value.get<double>());
    if (r.contains("error")) f.set_attribute(g, "error", r["error"].get<std::string>());
    return;
  }
}

void write_group(moetron::h5::File& f, const std::string& group, const Json& meta, const std::vector<Json>& rows) {
  std::set<int64_t> batches;
  for (const Json& r : rows)
    if (decode_record(r) && r.contains("batch") && r["batch"].is_number()) batches.insert(r["batch"].get<int64_t>());
  auto find = [&](const char* engine, int64_t b) -> Json {
    const Json* r = find_record(rows, engine, "batch", b);
    return r ? *r : Json::object();
  };
  // (dataset, engine, key): each column of the table.
  const std::vector<std::tuple<const char*, const char*, const char*>> columns = {
      {"decode_tok_s", "moetron", "decode_tok_s"},         {"decode_step_s", "moetron", "decode_step_s"},
      {"roofline_tok_s", "moetron", "roofline_tok_s"},     {"fraction_of_roofline", "moetron", "fraction_of_roofline"},
      {"step_bytes", "moetron", "step_bytes"},             {"step_flops", "moetron", "step_flops"},
      {"prefill_tok_s", "moetron", "prefill_tok_s"},       {"eager_decode_step_s", "moetron-eager", "decode_step_s"},
      {"hf_decode_tok_s", "hf", "decode_tok_s"},           {"hf_prefill_tok_s", "hf", "prefill_tok_s"},
      {"gpu_idle_in_step_graphs", "idle-graphs", "idle_within_step"},
      {"gpu_idle_in_step_eager", "idle-eager", "idle_within_step"},
      {"sampled_decode_step_s", "moetron-sampling", "sampled_step_s"},
      {"sampling_overhead", "moetron-sampling", "sampling_overhead"}};
  f.create_group(group);
  f.write(group + "/batch", std::vector<int64_t>(batches.begin(), batches.end()));
  for (const auto& [name, engine, key] : columns) {
    std::vector<double> values;
    for (int64_t b : batches) values.push_back(field(find(engine, b), key));
    f.write(group + "/" + name, values);
  }
  f.set_attribute(group, "device", meta.value("device", ""));
  f.set_attribute(group, "date", meta.value("date", ""));
  f.set_attribute(group, "hbm_bytes_per_s", field(meta, "hbm_bytes_per_s"));
  f.set_attribute(group, "bf16_flops_per_s", field(meta, "bf16_flops_per_s"));
  f.set_attribute(group, "prompt_tokens", field(meta, "prompt"));
  if (meta.contains("note")) f.set_attribute(group, "note", meta["note"].get<std::string>());
  write_prefill(f, group, rows);
  write_startup(f, group, rows);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_to_h5 OUT.h5 RESULTS.json...\n");
    return 2;
  }
  const std::string out = argv[1], tmp = out + ".tmp";
  try {
    {
      moetron::h5::File f = moetron::h5::File::create(tmp);
      for (int i = 2; i < argc; ++i) {
        std::ifstream in(argv[i]);
        const Json data = Json::parse(in);
        std::map<std::string, std::vector<Json>> by_model;
        for (const Json& r : data.at("records")) by_model[r.value("model", "?")].push_back(r);
        for (const auto& [model, rows] : by_model)
          write_group(f, "/" + model + "@" + data["meta"].value("device", "?"), data["meta"], rows);
      }
      f.close();
    }
    if (std::rename(tmp.c_str(), out.c_str()) != 0) throw std::runtime_error("cannot rename " + tmp);
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    std::fprintf(stderr, "bench_to_h5: %s\n", e.what());
    return 1;
  }
  return 0;
}
