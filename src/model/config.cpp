#include "moetron/model/config.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"
#include "moetron/io/input_text.hpp"

namespace moetron {

using nlohmann::json;

const char* family_name(Family f) {
  switch (f) {
    case Family::Mixtral: return "mixtral";
    case Family::Qwen2Moe: return "qwen2_moe";
    case Family::Olmoe: return "olmoe";
    case Family::Qwen3Moe: return "qwen3_moe";
  }
  return "?";
}

Family parse_family(const std::string& model_type, const std::string& where) {
  for (Family f : {Family::Mixtral, Family::Qwen2Moe, Family::Olmoe, Family::Qwen3Moe})
    if (model_type == family_name(f)) return f;
  MOETRON_FAIL(where << ": unsupported model_type '" << model_type
                     << "' (supported: mixtral, qwen2_moe, olmoe, qwen3_moe)");
}

namespace {

// Typed access to the fields of one config.json; every message names the file and the field.
// A field that is present but null counts as absent, as transformers treats it.
class ConfigFields {
 public:
  ConfigFields(const json& j, const std::string& path) : j_(j), path_(path) {
    MOETRON_CHECK(j.is_object(), path << ": expected a JSON object at top level");
  }

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& raw(const char* key) const { return j_.at(key); }
  const std::string& path() const { return path_; }

  int64_t integer(const char* key) const {
    MOETRON_CHECK(has(key), path_ << ": missing field '" << key << "'");
    return as_integer(j_.at(key), key);
  }
  int64_t integer_or(const char* key, int64_t fallback) const {
    return has(key) ? as_integer(j_.at(key), key) : fallback;
  }
  double number(const char* key) const {
    MOETRON_CHECK(has(key), path_ << ": missing field '" << key << "'");
    return as_number(j_.at(key), key);
  }
  double number_or(const char* key, double fallback) const {
    return has(key) ? as_number(j_.at(key), key) : fallback;
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    MOETRON_CHECK(j_.at(key).is_boolean(), path_ << ": field '" << key << "' must be true or false, got "
                                                 << j_.at(key).dump());
    return j_.at(key).get<bool>();
  }
  std::string string(const char* key) const {
    MOETRON_CHECK(has(key), path_ << ": missing field '" << key << "'");
    return as_string(j_.at(key), key);
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    return has(key) ? as_string(j_.at(key), key) : fallback;
  }
  // A list of integers, or an empty list when absent.
  std::vector<int64_t> integer_list_or_empty(const char* key) const {
    std::vector<int64_t> out;
    if (!has(key)) return out;
    const json& v = j_.at(key);
    MOETRON_CHECK(v.is_array(), path_ << ": field '" << key << "' must be a list of integers, got " << v.dump());
    for (const json& e : v) out.push_back(as_integer(e, key));
    return out;
  }

  int64_t as_integer(const json& v, const std::string& key) const {
    MOETRON_CHECK(v.is_number_integer(), path_ << ": field '" << key << "' must be an integer, got " << v.dump());
    MOETRON_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
                  path_ << ": field '" << key << "' is too large: " << v.dump());
    return v.get<int64_t>();
  }
  double as_number(const json& v, const std::string& key) const {
    MOETRON_CHECK(v.is_number(), path_ << ": field '" << key << "' must be a number, got " << v.dump());
    return v.get<double>();
  }
  std::string as_string(const json& v, const std::string& key) const {
    MOETRON_CHECK(v.is_string(), path_ << ": field '" << key << "' must be a string, got " << v.dump());
    return v.get<std::string>();
  }

 private:
  const json& j_;
  std::string path_;
};

bool is_qwen(Family f) { return f == Family::Qwen2Moe || f == Family::Qwen3Moe; }

// 4.x names the expert count `num_experts` (except mixtral's `num_local_experts`); 5.x may write
// either. Both present must agree.
int64_t parse_num_experts(const ConfigFields& f) {
  bool local = f.has("num_local_experts"), plain = f.has("num_experts");
  MOETRON_CHECK(local || plain, f.path() << ": missing field 'num_local_experts' (or 'num_experts')");
  int64_t n = local ? f.integer("num_local_experts") : f.integer("num_experts");
  MOETRON_CHECK(!(local && plain) || n == f.integer("num_experts"),
                f.path() << ": contradictory fields 'num_local_experts' (" << n << ") and 'num_experts' ("
                         << f.integer("num_experts") << ")");
  return n;
}

// A 4.x rope_scaling of type "default" is plain RoPE in transformers; any other is not supported.
void reject_rope_scaling(const ConfigFields& f) {
  if (!f.has("rope_scaling")) return;
  const json& v = f.raw("rope_scaling");
  bool plain = false;
  if (v.is_object()) {
    ConfigFields rs(v, f.path() + ": rope_scaling");
    plain = rs.string_or("rope_type", rs.string_or("type", "")) == "default";
  }
  MOETRON_CHECK(plain, f.path() << ": field 'rope_scaling' is " << v.dump()
                                << ": RoPE scaling is not supported (only plain RoPE)");
}

// rope_theta at top level (4.x) or in rope_parameters (5.x); only plain RoPE is supported.
double parse_rope_theta(const ConfigFields& f) {
  reject_rope_scaling(f);
  bool top = f.has("rope_theta");
  double theta = top ? f.number("rope_theta") : 0.0;
  if (f.has("rope_parameters")) {
    ConfigFields rp(f.raw("rope_parameters"), f.path() + ": rope_parameters");
    std::string type = rp.string_or("rope_type", "default");
    MOETRON_CHECK(type == "default", f.path() << ": field 'rope_parameters.rope_type' is '" << type
                                              << "': only 'default' RoPE is supported");
    if (rp.has("rope_theta")) {
      double nested = rp.number("rope_theta");
      MOETRON_CHECK(!top || nested == theta, f.path() << ": contradictory fields 'rope_theta' (" << theta
                                                      << ") and 'rope_parameters.rope_theta' (" << nested << ")");
      return nested;
    }
  }
  MOETRON_CHECK(top, f.path() << ": missing field 'rope_theta' (or 'rope_parameters.rope_theta')");
  return theta;
}

// Qwen: which layers transformers gives the window. 5.x lists them in layer_types; 4.x (and
// 5.x's default for layer_types) slides layers >= max_window_layers when use_sliding_window.
std::vector<bool> qwen_sliding_layers(const ConfigFields& f, int64_t layers) {
  std::vector<bool> slides(static_cast<size_t>(std::max<int64_t>(layers, 0)), false);
  if (f.has("layer_types")) {
    const json& types = f.raw("layer_types");
    MOETRON_CHECK(types.is_array() && static_cast<int64_t>(types.size()) == layers,
                  f.path() << ": field 'layer_types' must list one string per layer (" << layers << "), got "
                           << types.dump());
    for (int64_t i = 0; i < layers; ++i) slides[i] = f.as_string(types[i], "layer_types") == "sliding_attention";
    return slides;
  }
  if (!f.boolean_or("use_sliding_window", false)) return slides;
  const int64_t first = f.integer_or("max_window_layers", 28);  // transformers' default
  for (int64_t i = std::max<int64_t>(first, 0); i < layers; ++i) slides[i] = true;
  return slides;
}

// Sliding-window attention is not supported; a window that never slides is plain attention:
// one at least as long as the context, none at all, or one no layer uses.
void reject_sliding_window(const ConfigFields& f, ModelConfig& c) {
  const int64_t max_positions = c.max_position_embeddings;
  const bool window = f.has("sliding_window") && f.integer("sliding_window") < max_positions;
  if (c.family == Family::Mixtral) {
    MOETRON_CHECK(!window, f.path() << ": field 'sliding_window' is " << f.integer("sliding_window")
                                    << " (< max_position_embeddings " << max_positions
                                    << "): sliding-window attention is not supported");
  } else if (is_qwen(c.family)) {
    const std::vector<bool> slides = qwen_sliding_layers(f, c.num_layers);
    const auto first = std::find(slides.begin(), slides.end(), true);
    MOETRON_CHECK(!window || first == slides.end(),
                  f.path() << ": layer " << (first - slides.begin()) << " has a sliding window of "
                           << f.integer("sliding_window") << " (field 'sliding_window', < max_position_embeddings "
                           << max_positions << "; fields 'use_sliding_window', 'max_window_layers', "
                           << "'layer_types'): sliding-window attention is not supported");
    if (f.boolean_or("use_sliding_window", false))
      c.warnings.push_back(f.path() + ": field 'use_sliding_window' is true, but no layer has a window shorter "
                                      "than the context (fields 'sliding_window', 'max_window_layers', "
                                      "'layer_types'): plain attention, as in transformers");
  }
}

std::vector<int64_t> parse_eos(const ConfigFields& f) {
  if (!f.has("eos_token_id")) return {};
  const json& v = f.raw("eos_token_id");
  if (v.is_array()) return f.integer_list_or_empty("eos_token_id");
  return {f.as_integer(v, "eos_token_id")};
}

// Qwen: layer i is MoE iff not listed in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
// transformers only asks whether a layer is listed, so a listed layer the model does not have is
// ignored there and here (with a warning).
std::vector<bool> parse_moe_layers(const ConfigFields& f, Family family, int64_t layers, int64_t experts,
                                   std::vector<std::string>& warnings) {
  std::vector<bool> moe(static_cast<size_t>(std::max<int64_t>(layers, 0)), true);
  if (!is_qwen(family)) return moe;
  int64_t step = f.integer_or("decoder_sparse_step", 1);
  MOETRON_CHECK(step >= 1, f.path() << ": field 'decoder_sparse_step' must be >= 1, got " << step);
  std::set<int64_t> dense;
  for (int64_t i : f.integer_list_or_empty("mlp_only_layers")) {
    if (i < 0 || i >= layers) {
      std::ostringstream os;
      os << f.path() << ": field 'mlp_only_layers' lists layer " << i << ", outside [0, " << layers
         << "): ignored, as transformers does";
      warnings.push_back(os.str());
    }
    dense.insert(i);
  }
  for (int64_t i = 0; i < layers; ++i) moe[i] = !dense.count(i) && experts > 0 && (i + 1) % step == 0;
  return moe;
}

void parse_attention_options(const ConfigFields& f, ModelConfig& c) {
  switch (c.family) {
    case Family::Mixtral: break;
    case Family::Qwen2Moe:
      // 4.x has no field and always uses the bias; 5.x writes qkv_bias.
      c.qkv_bias = f.boolean_or("qkv_bias", true);
      break;
    case Family::Olmoe:
    case Family::Qwen3Moe:
      c.qkv_bias = c.o_bias = f.boolean_or("attention_bias", false);
      break;
  }
  if (c.family == Family::Olmoe) {
    c.qk_norm = QkNorm::WholeProjection;
    c.clip_qkv = f.number_or("clip_qkv", 0.0);
  } else if (c.family == Family::Qwen3Moe) {
    c.qk_norm = QkNorm::PerHead;
  }
}

void parse_mlp_options(const ConfigFields& f, ModelConfig& c) {
  c.intermediate_size = f.integer("intermediate_size");
  c.moe_intermediate_size = is_qwen(c.family) ? f.integer("moe_intermediate_size") : c.intermediate_size;
  c.num_experts = parse_num_experts(f);
  c.top_k = f.integer("num_experts_per_tok");
  c.norm_topk_prob = c.family == Family::Mixtral ? true : f.boolean_or("norm_topk_prob", false);
  if (c.family == Family::Qwen2Moe) {
    // Required: transformers' default (5632) would silently add a large shared expert.
    c.shared_expert_intermediate_size = f.integer("shared_expert_intermediate_size");
    c.shared_expert_gate = c.shared_expert_intermediate_size > 0;
  }
  c.layer_is_moe = parse_moe_layers(f, c.family, c.num_layers, c.num_experts, c.warnings);
}

// transformers loads and runs a model whose EOS ids lie outside its vocabulary (tiny test
// checkpoints keep their family's real EOS with a small vocabulary): such an EOS can never be
// sampled, so generation simply runs to max_new_tokens.
void warn_eos_outside_vocabulary(const std::string& path, ModelConfig& c) {
  for (int64_t t : c.eos_token_ids) {
    if (t >= 0 && t < c.vocab_size) continue;
    std::ostringstream os;
    os << path << ": field 'eos_token_id' has " << t << ", outside the vocabulary [0, " << c.vocab_size
       << "): that EOS can never be generated";
    c.warnings.push_back(os.str());
  }
}

}  // namespace

// Sizes far beyond any real model, refused before anything is allocated from them (a config
// of 10^9 layers or 2^40 experts once took gigabytes before failing).
static void check_size_bounds(const ConfigFields& f, const std::string& path) {
  const std::pair<const char*, int64_t> bounds[] = {
      {"vocab_size", int64_t{1} << 24},          {"hidden_size", int64_t{1} << 18},
      {"num_hidden_layers", 4096},               {"num_attention_heads", 4096},
      {"num_key_value_heads", 4096},             {"head_dim", 4096},
      {"intermediate_size", int64_t{1} << 20},   {"moe_intermediate_size", int64_t{1} << 20},
      {"shared_expert_intermediate_size", int64_t{1} << 20},
      {"num_local_experts", 16384},              {"num_experts", 16384},
      {"num_experts_per_tok", 16384},            {"max_position_embeddings", int64_t{1} << 26},
  };
  for (const auto& [field, most] : bounds)
    if (f.has(field))
      MOETRON_CHECK(f.integer(field) <= most, path << ": field '" << field << "' is " << f.integer(field)
                                                   << ", more than the " << most << " Moetron accepts");
  if (f.has("mlp_only_layers"))
    MOETRON_CHECK(f.raw("mlp_only_layers").size() <= 4096,
                  path << ": field 'mlp_only_layers' lists more than 4096 layers");
}

ModelConfig parse_model_config(const json& j, const std::string& path) {
  ConfigFields f(j, path);
  ModelConfig c;
  c.family = parse_family(f.string("model_type"), path + ": field 'model_type'");
  std::string act = f.string_or("hidden_act", "silu");
  MOETRON_CHECK(act == "silu", path << ": field 'hidden_act' is '" << act << "': only 'silu' is supported");

  c.vocab_size = f.integer("vocab_size");
  c.hidden_size = f.integer("hidden_size");
  c.num_layers = f.integer("num_hidden_layers");
  c.num_heads = f.integer("num_attention_heads");
  c.num_kv_heads = f.integer_or("num_key_value_heads", c.num_heads);
  if (f.has("head_dim")) {
    c.head_dim = f.integer("head_dim");
  } else {
    MOETRON_CHECK(c.num_heads > 0 && c.hidden_size % c.num_heads == 0,
                  path << ": field 'num_attention_heads' (" << c.num_heads << ") must divide 'hidden_size' ("
                       << c.hidden_size << ") when 'head_dim' is not given");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  c.max_position_embeddings = f.integer("max_position_embeddings");
  c.rms_norm_eps = f.number("rms_norm_eps");
  c.rope_theta = parse_rope_theta(f);
  reject_sliding_window(f, c);
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  c.eos_token_ids = parse_eos(f);
  // 5.x writes `dtype`, 4.x `torch_dtype`.
  c.torch_dtype = f.string_or("dtype", f.string_or("torch_dtype", "bfloat16"));

  parse_attention_options(f, c);
  check_size_bounds(f, path);
  parse_mlp_options(f, c);
  c.validate(path);
  warn_eos_outside_vocabulary(path, c);
  if (log_rank() == 0)  // every rank parses the same file: one warning per job
    for (const std::string& w : c.warnings) LOG_WARN(w);
  return c;
}

// config.json files are a few kilobytes; anything larger is not one.
constexpr uint64_t kMaxConfigBytes = 16u << 20;

ModelConfig load_model_config(const std::string& path) {
  return parse_model_config(parse_json_strict(read_regular_file(path, "the model config", kMaxConfigBytes), path), path);
}

int64_t ModelConfig::num_moe_layers() const {
  return std::count(layer_is_moe.begin(), layer_is_moe.end(), true);
}

bool ModelConfig::is_eos(int64_t token) const {
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token) != eos_token_ids.end();
}

void ModelConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* field) {
    MOETRON_CHECK(v > 0, where << ": field '" << field << "' must be positive, got " << v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(num_layers, "num_hidden_layers");
  positive(num_heads, "num_attention_heads");
  positive(num_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(intermediate_size, "intermediate_size");
  positive(moe_intermediate_size, "moe_intermediate_size");
  positive(num_experts, "num_experts");
  positive(top_k, "num_experts_per_tok");
  positive(max_position_embeddings, "max_position_embeddings");
  MOETRON_CHECK(num_heads % num_kv_heads == 0, where << ": field 'num_key_value_heads' (" << num_kv_heads
                                                     << ") must divide 'num_attention_heads' (" << num_heads << ")");
  MOETRON_CHECK(head_dim % 2 == 0, where << ": field 'head_dim' must be even for RoPE, got " << head_dim);
  MOETRON_CHECK(top_k <= num_experts, where << ": field 'num_experts_per_tok' (" << top_k
                                            << ") exceeds the number of experts (" << num_experts << ")");
  MOETRON_CHECK(shared_expert_intermediate_size >= 0,
                where << ": field 'shared_expert_intermediate_size' must not be negative");
  MOETRON_CHECK(rms_norm_eps > 0, where << ": field 'rms_norm_eps' must be positive, got " << rms_norm_eps);
  MOETRON_CHECK(rope_theta > 0, where << ": field 'rope_theta' must be positive, got " << rope_theta);
  MOETRON_CHECK(clip_qkv >= 0, where << ": field 'clip_qkv' must not be negative, got " << clip_qkv);
  MOETRON_CHECK(static_cast<int64_t>(layer_is_moe.size()) == num_layers,
                where << ": " << layer_is_moe.size() << " layer kinds for " << num_layers << " layers");
}

namespace {

// Parameter counts of the pieces of the model, shared by total and active counts.
struct ParamCounts {
  int64_t embeddings = 0;    // embedding table + untied lm_head + final norm
  int64_t per_layer_fixed = 0;  // norms + attention, every layer
  int64_t dense_mlp = 0;     // a dense (non-MoE) layer's MLP
  int64_t moe_fixed = 0;     // router + shared expert (+ its gate) of an MoE layer
  int64_t expert = 0;        // one routed expert
};

ParamCounts count_params(const ModelConfig& c) {
  ParamCounts p;
  int64_t h = c.hidden_size;
  p.embeddings = c.vocab_size * h * (c.tie_word_embeddings ? 1 : 2) + h;
  int64_t attention = h * c.q_width() + 2 * h * c.kv_width() + c.q_width() * h;
  if (c.qkv_bias) attention += c.q_width() + 2 * c.kv_width();
  if (c.o_bias) attention += h;
  if (c.qk_norm == QkNorm::WholeProjection) attention += c.q_width() + c.kv_width();
  if (c.qk_norm == QkNorm::PerHead) attention += 2 * c.head_dim;
  p.per_layer_fixed = 2 * h + attention;
  p.dense_mlp = 3 * h * c.intermediate_size;
  p.moe_fixed = c.num_experts * h + 3 * h * c.shared_expert_intermediate_size + (c.shared_expert_gate ? h : 0);
  p.expert = 3 * h * c.moe_intermediate_size;
  return p;
}

int64_t count_with_experts_per_layer(const ModelConfig& c, int64_t experts_per_layer) {
  ParamCounts p = count_params(c);
  int64_t moe = c.num_moe_layers(), dense = c.num_layers - moe;
  return p.embeddings + c.num_layers * p.per_layer_fixed + dense * p.dense_mlp +
         moe * (p.moe_fixed + experts_per_layer * p.expert);
}

}  // namespace

int64_t ModelConfig::total_params() const { return count_with_experts_per_layer(*this, num_experts); }

int64_t ModelConfig::active_params_per_token() const { return count_with_experts_per_layer(*this, top_k); }

std::string ModelConfig::summary() const {
  std::ostringstream os;
  os << "family               " << family_name(family) << "\n"
     << "vocab / hidden       " << vocab_size << " / " << hidden_size << "\n"
     << "layers               " << num_layers << " (" << num_moe_layers() << " MoE, "
     << num_layers - num_moe_layers() << " dense)\n"
     << "attention            " << num_heads << " heads, " << num_kv_heads << " kv heads, head_dim " << head_dim
     << (qkv_bias ? ", qkv bias" : "") << (o_bias ? ", o bias" : "")
     << (qk_norm == QkNorm::WholeProjection ? ", qk-norm (whole projection)"
                                            : qk_norm == QkNorm::PerHead ? ", qk-norm (per head)" : "");
  if (clip_qkv > 0) os << ", clip_qkv " << clip_qkv;
  os << "\n"
     << "experts              " << num_experts << " x width " << moe_intermediate_size << ", top-" << top_k
     << (norm_topk_prob ? " (renormalised)" : "") << "\n";
  if (shared_expert_intermediate_size > 0)
    os << "shared expert        width " << shared_expert_intermediate_size
       << (shared_expert_gate ? ", sigmoid gate" : "") << "\n";
  if (num_moe_layers() < num_layers) os << "dense MLP width      " << intermediate_size << "\n";
  os << "rope theta           " << rope_theta << ", max positions " << max_position_embeddings << "\n"
     << "rms_norm_eps         " << rms_norm_eps << "\n"
     << "tied embeddings      " << (tie_word_embeddings ? "yes" : "no") << "\n"
     << "eos tokens           ";
  for (size_t i = 0; i < eos_token_ids.size(); ++i) os << (i ? ", " : "") << eos_token_ids[i];
  if (eos_token_ids.empty()) os << "(none)";
  os << "\n";
  return os.str();
}

static const char* qk_norm_name(QkNorm n) {
  switch (n) {
    case QkNorm::None: return "none";
    case QkNorm::WholeProjection: return "whole_projection";
    case QkNorm::PerHead: return "per_head";
  }
  return "?";
}

json ModelConfig::to_json() const {
  json moe_layers = json::array();
  for (bool b : layer_is_moe) moe_layers.push_back(b);
  return json{{"family", family_name(family)},
              {"vocab_size", vocab_size},
              {"hidden_size", hidden_size},
              {"num_layers", num_layers},
              {"num_heads", num_heads},
              {"num_kv_heads", num_kv_heads},
              {"head_dim", head_dim},
              {"intermediate_size", intermediate_size},
              {"moe_intermediate_size", moe_intermediate_size},
              {"num_experts", num_experts},
              {"top_k", top_k},
              {"norm_topk_prob", norm_topk_prob},
              {"shared_expert_intermediate_size", shared_expert_intermediate_size},
              {"shared_expert_gate", shared_expert_gate},
              {"qkv_bias", qkv_bias},
              {"o_bias", o_bias},
              {"qk_norm", qk_norm_name(qk_norm)},
              {"clip_qkv", clip_qkv},
              {"rms_norm_eps", rms_norm_eps},
              {"rope_theta", rope_theta},
              {"max_position_embeddings", max_position_embeddings},
              {"tie_word_embeddings", tie_word_embeddings},
              {"layer_is_moe", moe_layers},
              {"eos_token_ids", eos_token_ids},
              {"torch_dtype", torch_dtype},
              {"total_params", total_params()},
              {"active_params_per_token", active_params_per_token()}};
}

namespace {

const char* architecture_name(Family f) {
  switch (f) {
    case Family::Mixtral: return "MixtralForCausalLM";
    case Family::Qwen2Moe: return "Qwen2MoeForCausalLM";
    case Family::Olmoe: return "OlmoeForCausalLM";
    case Family::Qwen3Moe: return "Qwen3MoeForCausalLM";
  }
  return "?";
}

// The family-specific keys of an HF config; fails for settings transformers 4.x cannot express.
void add_family_fields(const ModelConfig& c, json& j) {
  const std::string where = std::string("writing a ") + family_name(c.family) + " config";
  auto require = [&](bool ok, const std::string& what) {
    MOETRON_CHECK(ok, where << ": transformers' " << family_name(c.family) << " cannot express " << what);
  };
  require(c.family == Family::Mixtral || is_qwen(c.family) || c.moe_intermediate_size == c.intermediate_size,
          "an expert width different from intermediate_size");
  require(c.family == Family::Mixtral || c.family == Family::Qwen3Moe || c.head_dim * c.num_heads == c.hidden_size,
          "head_dim != hidden_size / num_attention_heads");
  require(c.family == Family::Qwen2Moe || c.shared_expert_intermediate_size == 0, "a shared expert");
  require(c.shared_expert_gate == (c.shared_expert_intermediate_size > 0), "a shared expert without its gate");
  switch (c.family) {
    case Family::Mixtral:
      require(c.norm_topk_prob && !c.qkv_bias && !c.o_bias && c.qk_norm == QkNorm::None,
              "biases, QK-norm or un-normalised top-k");
      j["num_local_experts"] = c.num_experts;
      j["head_dim"] = c.head_dim;
      j["sliding_window"] = nullptr;
      break;
    case Family::Qwen2Moe:
      require(c.qkv_bias && !c.o_bias && c.qk_norm == QkNorm::None, "a missing qkv bias, o bias or QK-norm");
      j["qkv_bias"] = true;
      j["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
      break;
    case Family::Olmoe:
      require(c.qkv_bias == c.o_bias && c.qk_norm == QkNorm::WholeProjection,
              "q/k/v bias different from o bias, or other QK-norm");
      j["attention_bias"] = c.qkv_bias;
      j["clip_qkv"] = c.clip_qkv > 0 ? json(c.clip_qkv) : json(nullptr);
      break;
    case Family::Qwen3Moe:
      require(c.qkv_bias == c.o_bias && c.qk_norm == QkNorm::PerHead,
              "q/k/v bias different from o bias, or other QK-norm");
      j["attention_bias"] = c.qkv_bias;
      j["head_dim"] = c.head_dim;
      break;
  }
  if (c.family != Family::Mixtral) {
    j["num_experts"] = c.num_experts;
    j["norm_topk_prob"] = c.norm_topk_prob;
  }
  if (is_qwen(c.family)) {
    json dense = json::array();
    for (int64_t i = 0; i < c.num_layers; ++i)
      if (!c.layer_is_moe[i]) dense.push_back(i);
    j["moe_intermediate_size"] = c.moe_intermediate_size;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = dense;
    j["use_sliding_window"] = false;
  } else {
    require(c.num_moe_layers() == c.num_layers, "dense (non-MoE) layers");
  }
}

}  // namespace

json to_hf_config_json(const ModelConfig& c) {
  json j{{"architectures", {architecture_name(c.family)}},
         {"model_type", family_name(c.family)},
         {"torch_dtype", c.torch_dtype},
         {"hidden_act", "silu"},
         {"vocab_size", c.vocab_size},
         {"hidden_size", c.hidden_size},
         {"num_hidden_layers", c.num_layers},
         {"num_attention_heads", c.num_heads},
         {"num_key_value_heads", c.num_kv_heads},
         {"intermediate_size", c.intermediate_size},
         {"num_experts_per_tok", c.top_k},
         {"rms_norm_eps", c.rms_norm_eps},
         {"rope_theta", c.rope_theta},
         {"max_position_embeddings", c.max_position_embeddings},
         {"tie_word_embeddings", c.tie_word_embeddings}};
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  add_family_fields(c, j);
  return j;
}

}  // namespace moetron
