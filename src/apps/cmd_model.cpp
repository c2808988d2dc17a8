// `moetron model make|info`: write deterministic random-weight checkpoints in Hugging Face's
// layout, and describe a checkpoint folder (config, parameters, bytes, tensor check).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "option_parsing.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/format.hpp"
#include "moetron/model/config.hpp"
#include "moetron/model/random_checkpoint.hpp"
#include "moetron/model/safetensors.hpp"
#include "moetron/model/weight_names.hpp"

namespace po = boost::program_options;

namespace moetron::apps {
namespace {

const char* kModelUsage =
    "usage: moetron model make --family NAME [--preset NAME] [--set key=value ...] --out DIR\n"
    "                          [--seed S] [--dtype bf16|f16|f32] [--max-shard-size BYTES]\n"
    "       moetron model info --model DIR\n\n"
    "'moetron model make --help' and 'moetron model info --help' describe the options.\n";

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1000000000)
    std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1000000)
    std::snprintf(buf, sizeof buf, "%.2fM", n / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

// Bytes per parameter of the checkpoint's declared dtype (bf16 when it names none we know).
size_t bytes_per_param(const std::string& torch_dtype) {
  for (DType t : {DType::BF16, DType::F16, DType::F32})
    if (torch_dtype == torch_dtype_name(t)) return dtype_size(t);
  return 2;
}

int make_command(const std::vector<std::string>& args) {
  std::string family, preset, out, dtype_text, max_shard_text;
  bool config_only = false;
  std::vector<std::string> sets;
  int64_t seed = 0;
  po::options_description options("moetron model make: write a deterministic random-weight checkpoint");
  options.add_options()
      ("help,h", "show this help")
      ("family", po::value(&family)->required(), "model family: mixtral, qwen2_moe, olmoe, qwen3_moe")
      ("preset", po::value(&preset)->default_value("tiny"),
       "shape preset: tiny (all families), olmoe-1b-7b, qwen1.5-moe-a2.7b, mixtral-8x7b, qwen3-30b-a3b")
      ("set", po::value(&sets)->composing(),
       "key=value: edit a top-level key of the preset's config.json (value parsed as JSON, else a string); repeatable")
      ("out", po::value(&out)->required(), "output folder (created if needed)")
      ("seed", po::value(&seed)->default_value(0), "random seed; equal seeds give identical weights")
      ("dtype", po::value(&dtype_text)->default_value("bf16"), "weight dtype: bf16, f16 or f32")
      ("max-shard-size", po::value(&max_shard_text)->default_value("5GB"),
       "largest safetensors file before sharding (bytes, or with a unit: 500MB, 2GiB)")
      ("config-only", po::bool_switch(&config_only),
       "write only config.json (for `moetron run --load-format dummy`: shapes whose weights would not fit the disk)");
  po::variables_map vm;
  if (!parse_options("model make", args, options, vm)) return 0;

  MOETRON_CHECK(seed >= 0, "--seed must not be negative, got " << seed);
  Family f = parse_family(family, "--family");
  DType dtype = parse_weight_dtype(dtype_text, "--dtype");
  uint64_t max_shard = parse_byte_size(max_shard_text, "--max-shard-size");
  nlohmann::json config = hf_preset_json(f, preset);
  apply_config_overrides(config, sets);

  if (config_only) {
    const ModelConfig parsed = parse_model_config(config, "--preset " + preset);  // validates
    std::filesystem::create_directories(out);
    nlohmann::json written = config;
    written["torch_dtype"] = torch_dtype_name(dtype);
    write_text_file_atomically((std::filesystem::path(out) / "config.json").string(), written.dump(2) + "\n");
    std::cout << "wrote " << out << "/config.json: " << family_name(f) << " (" << preset << "), "
              << human_count(parsed.total_params()) << " parameters (no weights)\n";
    return 0;
  }
  RandomCheckpointResult r = write_random_checkpoint(config, out, static_cast<uint64_t>(seed), dtype, max_shard);
  std::cout << "wrote " << out << ": " << family_name(f) << " (" << preset << (sets.empty() ? "" : " + --set")
            << "), " << human_count(r.config.total_params()) << " parameters, " << human_bytes(r.data_bytes) << " in "
            << r.files.size() - 1 << " file(s), seed " << seed << ", " << torch_dtype_name(dtype) << "\n";
  return 0;
}

int info_command(const std::vector<std::string>& args) {
  std::string dir;
  po::options_description options("moetron model info: describe a checkpoint folder");
  options.add_options()
      ("help,h", "show this help")
      ("model", po::value(&dir)->required(), "checkpoint folder (config.json + safetensors)");
  po::variables_map vm;
  if (!parse_options("model info", args, options, vm)) return 0;

  ModelConfig c = load_model_config((std::filesystem::path(dir) / "config.json").string());
  const size_t bpp = bytes_per_param(c.torch_dtype);
  std::cout << "model " << dir << "\n"
            << c.summary() << "parameters           " << human_count(c.total_params()) << " total ("
            << human_bytes(static_cast<double>(c.total_params()) * bpp) << " as " << c.torch_dtype << "), "
            << human_count(c.active_params_per_token()) << " active per token ("
            << human_bytes(static_cast<double>(c.active_params_per_token()) * bpp) << ")\n";

  namespace fs = std::filesystem;
  if (!fs::exists(fs::path(dir) / "model.safetensors") && !fs::exists(fs::path(dir) / "model.safetensors.index.json")) {
    std::cout << "weights              none (config only)\n";
    return 0;
  }
  Checkpoint ckpt = Checkpoint::open(dir);
  check_checkpoint(ckpt, c);
  std::cout << "weights              " << ckpt.names().size() << " tensors, " << human_bytes(ckpt.data_bytes())
            << (ckpt.sharded() ? " (sharded)" : "") << "; every expected tensor present with its shape\n";
  return 0;
}

}  // namespace

int model_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << kModelUsage;
    return args.empty() ? 1 : 0;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "make") return make_command(rest);
  if (args[0] == "info") return info_command(rest);
  MOETRON_FAIL("model: unknown subcommand '" << args[0] << "' (expected make or info; see 'moetron model --help')");
}

}  // namespace moetron::apps
