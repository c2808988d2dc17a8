#include "moetron/io/prompts.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "moetron/core/error.hpp"
#include "moetron/io/input_text.hpp"

namespace moetron {
namespace {

using json = nlohmann::json;

// A request line holds at most a few hundred thousand token ids; JSON parsing takes tens of
// times a line's size in memory, so longer lines are refused before parsing.
constexpr size_t kMaxPromptLineBytes = 16u << 20;
constexpr uint64_t kMaxPromptsFileBytes = 4ull << 30;

const char* const kFields[] = {"id",   "prompt_tokens", "max_new_tokens", "temperature", "top_k",
                               "top_p", "seed",          "ignore_eos",     "arrival_s",   "after"};

// Where a value came from, for "FILE:LINE: field 'name' ..." messages.
struct Where {
  const std::string& path;
  int64_t line;
};
std::ostream& operator<<(std::ostream& os, const Where& w) {
  return os << w.path << ":" << w.line << ": ";
}

// Levenshtein distance, to suggest the intended field for a misspelt one.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

[[noreturn]] void unknown_field(const Where& at, const std::string& key) {
  std::string closest;
  size_t best = 3;  // suggest only near misses
  for (const char* f : kFields) {
    size_t d = edit_distance(key, f);
    if (d < best) best = d, closest = f;
  }
  std::ostringstream known;
  for (const char* f : kFields) known << (f == kFields[0] ? "" : ", ") << f;
  MOETRON_FAIL(at << "unknown field '" << key << "'"
                  << (closest.empty() ? "" : " (did you mean '" + closest + "'?)")
                  << "; known fields: " << known.str());
}

// An integer in [lo, hi]; JSON floats such as 3.0 are not integers here.
int64_t integer_in(const json& v, const std::string& field, int64_t lo, int64_t hi,
                   const Where& at) {
  bool ok = v.is_number_integer() && !(v.is_number_unsigned() &&
                                        v.get<uint64_t>() > std::numeric_limits<int64_t>::max());
  int64_t value = ok ? v.get<int64_t>() : 0;
  ok = ok && value >= lo && value <= hi;
  if (hi == std::numeric_limits<int64_t>::max())
    MOETRON_CHECK(ok, at << "field '" << field << "' must be an integer >= " << lo << ", got "
                         << v.dump());
  MOETRON_CHECK(ok, at << "field '" << field << "' must be an integer in [" << lo << ", " << hi
                       << "], got " << v.dump());
  return value;
}

double finite_number(const json& v, const std::string& field, const Where& at) {
  MOETRON_CHECK(v.is_number() && std::isfinite(v.get<double>()),
                at << "field '" << field << "' must be a number, got " << v.dump());
  return v.get<double>();
}

// `field` is "id", or "after" (which names an id).
std::string request_id(const json& v, const Where& at, const char* field = "id") {
  if (v.is_string()) {
    MOETRON_CHECK(!v.get<std::string>().empty(), at << "field '" << field << "' must not be empty");
    // The results file stores ids as HDF5 strings, which end at a NUL.
    MOETRON_CHECK(v.get<std::string>().find('\0') == std::string::npos,
                  at << "field '" << field << "' contains a NUL byte (\\u0000), which the results file cannot store");
    return v.get<std::string>();
  }
  MOETRON_CHECK(v.is_number_integer(),
                at << "field '" << field << "' must be a string or an integer, got " << v.dump());
  return v.dump();
}

// Seconds after the run starts: finite and >= 0 (1e400 parses as infinity and is refused).
double arrival_seconds(const json& v, const Where& at) {
  const double s = finite_number(v, "arrival_s", at);
  MOETRON_CHECK(s >= 0, at << "field 'arrival_s' must be >= 0 (seconds after the run starts), got " << v.dump());
  return s;
}

std::vector<int32_t> token_ids(const json& v, const Where& at) {
  MOETRON_CHECK(v.is_array(), at << "field 'prompt_tokens' must be an array of token ids, got "
                                 << v.dump());
  std::vector<int32_t> tokens;
  tokens.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    tokens.push_back(static_cast<int32_t>(integer_in(v[i], "prompt_tokens[" + std::to_string(i) + "]",
                                                     0, std::numeric_limits<int32_t>::max(), at)));
  return tokens;
}

// Parses one line's JSON, refusing repeated keys (nlohmann would keep the last one silently).
json parse_line(const std::string& text, const Where& at) {
  std::set<std::string> keys;
  std::string repeated;
  json::parser_callback_t note_keys = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second &&
        repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  json j;
  try {
    j = json::parse(text, note_keys);
  } catch (const json::exception& e) {
    // nlohmann says "[json.exception.parse_error.101] parse error at line 1, column 7: ...";
    // the line number is ours to give (we parse one line at a time), the column is useful.
    std::string reason = e.what();
    reason.erase(0, reason.find("] ") == std::string::npos ? 0 : reason.find("] ") + 2);
    size_t line_one = reason.find("line 1, column");
    if (line_one != std::string::npos) reason.erase(line_one, 8);
    MOETRON_FAIL(at << "invalid JSON: " << reason);
  }
  MOETRON_CHECK(repeated.empty(), at << "field '" << repeated << "' appears twice");
  return j;
}

// "after": the request arrives when an earlier request (named by its id) finishes.
int64_t after_index(const json& j, const std::map<std::string, int64_t>& index_of_id, const Where& at) {
  const std::string id = request_id(j["after"], at, "after");
  MOETRON_CHECK(!j.contains("arrival_s"),
                at << "fields 'arrival_s' and 'after' exclude each other (a request arrives at a time or when "
                      "another finishes)");
  const auto it = index_of_id.find(id);
  MOETRON_CHECK(it != index_of_id.end(),
                at << "field 'after': no earlier line has id \"" << id << "\" (a request can follow only one "
                   << "listed before it)");
  return it->second;
}

RequestSpec parse_request(const json& j, size_t index, const std::map<std::string, int64_t>& index_of_id,
                          const Where& at) {
  MOETRON_CHECK(j.is_object(), at << "each line must be a JSON object (a request), got "
                                  << j.type_name());
  for (const auto& item : j.items())
    if (std::find(std::begin(kFields), std::end(kFields), item.key()) == std::end(kFields))
      unknown_field(at, item.key());
  MOETRON_CHECK(j.contains("prompt_tokens"), at << "missing field 'prompt_tokens'");

  RequestSpec r;
  r.line = at.line;
  r.id = j.contains("id") ? request_id(j["id"], at) : std::to_string(index);
  r.prompt_tokens = token_ids(j["prompt_tokens"], at);
  // At least one new token: a request that generates nothing has no time to first token.
  if (j.contains("max_new_tokens"))
    r.max_new_tokens = integer_in(j["max_new_tokens"], "max_new_tokens", 1,
                                  std::numeric_limits<int64_t>::max(), at);
  if (j.contains("temperature")) {
    double t = finite_number(j["temperature"], "temperature", at);
    MOETRON_CHECK(t >= 0, at << "field 'temperature' must be >= 0 (0 is greedy), got " << t);
    r.temperature = static_cast<float>(t);
  }
  if (j.contains("top_p")) {
    double p = finite_number(j["top_p"], "top_p", at);
    MOETRON_CHECK(p > 0 && p <= 1, at << "field 'top_p' must be in (0, 1], got " << p);
    r.top_p = static_cast<float>(p);
  }
  if (j.contains("top_k"))
    r.top_k = static_cast<int>(
        integer_in(j["top_k"], "top_k", 0, std::numeric_limits<int>::max(), at));
  if (j.contains("seed")) {
    const json& s = j["seed"];
    MOETRON_CHECK(s.is_number_unsigned(),
                  at << "field 'seed' must be an integer >= 0, got " << s.dump());
    r.seed = s.get<uint64_t>();
  }
  if (j.contains("ignore_eos")) {
    const json& e = j["ignore_eos"];
    MOETRON_CHECK(e.is_boolean(), at << "field 'ignore_eos' must be true or false, got " << e.dump());
    r.ignore_eos = e.get<bool>();
  }
  if (j.contains("arrival_s")) r.arrival_s = arrival_seconds(j["arrival_s"], at);
  if (j.contains("after")) r.after = after_index(j, index_of_id, at);
  return r;
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); });
}

}  // namespace

std::vector<RequestSpec> parse_prompts(const std::string& text, const std::string& path) {
  std::vector<RequestSpec> specs;
  std::map<std::string, int64_t> line_of_id, index_of_id;
  std::istringstream lines(text);
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();                 // CRLF files
    Where at{path, number};
    MOETRON_CHECK(line.size() <= kMaxPromptLineBytes,
                  at << "line is " << line.size() << " bytes, more than the " << kMaxPromptLineBytes
                     << "-byte limit of one request");
    if (is_blank(line)) continue;
    RequestSpec r = parse_request(parse_line(line, at), specs.size(), index_of_id, at);
    auto [first, inserted] = line_of_id.emplace(r.id, number);
    MOETRON_CHECK(inserted, at << "field 'id': duplicate id \"" << r.id << "\" (first used at line "
                               << first->second << ")");
    index_of_id.emplace(r.id, static_cast<int64_t>(specs.size()));
    specs.push_back(std::move(r));
  }
  MOETRON_CHECK(!specs.empty(), path << ": no requests (the prompts file is empty)");
  return specs;
}

std::string format_prompts(const std::vector<RequestSpec>& specs) {
  std::string text;
  for (const RequestSpec& r : specs) {
    nlohmann::ordered_json j;  // keys in the order written
    j["id"] = r.id;
    j["prompt_tokens"] = r.prompt_tokens;
    if (r.max_new_tokens > 0) j["max_new_tokens"] = r.max_new_tokens;
    if (r.temperature) j["temperature"] = *r.temperature;
    if (r.top_k) j["top_k"] = *r.top_k;
    if (r.top_p) j["top_p"] = *r.top_p;
    if (r.seed) j["seed"] = *r.seed;
    if (r.ignore_eos) j["ignore_eos"] = *r.ignore_eos;
    if (r.arrival_s) j["arrival_s"] = *r.arrival_s;
    if (r.after >= 0) j["after"] = specs.at(static_cast<size_t>(r.after)).id;
    text += j.dump() + "\n";
  }
  return text;
}

std::vector<RequestSpec> read_prompts(const std::string& path) {
  return parse_prompts(read_regular_file(path, "prompts file", kMaxPromptsFileBytes), path);
}

void validate_requests(const std::vector<RequestSpec>& specs, int64_t vocab_size,
                       int64_t max_context, const std::string& path) {
  for (const RequestSpec& r : specs) {
    Where at{path, r.line};
    MOETRON_CHECK(!r.prompt_tokens.empty(),
                  at << "request '" << r.id << "': field 'prompt_tokens' is empty");
    for (size_t i = 0; i < r.prompt_tokens.size(); ++i)
      MOETRON_CHECK(r.prompt_tokens[i] >= 0 && r.prompt_tokens[i] < vocab_size,
                    at << "request '" << r.id << "': field 'prompt_tokens[" << i << "]' = "
                       << r.prompt_tokens[i] << " is outside the model's vocabulary [0, "
                       << vocab_size << ")");
    int64_t prompt = static_cast<int64_t>(r.prompt_tokens.size());
    if (r.max_new_tokens > 0) {
      MOETRON_CHECK(r.max_new_tokens <= max_context - prompt,
                    at << "request '" << r.id << "': prompt_tokens (" << prompt
                       << ") + max_new_tokens (" << r.max_new_tokens
                       << ") exceed the model's context of " << max_context << " tokens");
    } else {
      MOETRON_CHECK(prompt < max_context,
                    at << "request '" << r.id << "': prompt_tokens (" << prompt
                       << ") leave no room to generate in the model's context of " << max_context
                       << " tokens");
    }
  }
}

}  // namespace moetron
