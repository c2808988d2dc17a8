// compare_results A.h5 B.h5 [--rtol R] [--no-logits] [--min-agreement F]: exits 0 when two
// results files hold the
// same generated tokens (exactly) and, when both saved them, logits within R relative
// (max |a - b| / max |b| over each row). Prints the first difference otherwise. With
// --min-agreement F it only requires that share of the tokens to agree position by position.
// compare_results --hf-reference reference.json A.h5 [--rtol R]: the same against the greedy
// tokens and step logits Hugging Face produced (tests/hf/make_fixtures.py), request i being
// the reference's prompt i.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fstream>
#include <nlohmann/json.hpp>

#include "moetron/io/results.hpp"

namespace {

// Max over rows of max |a - b| / max |b|.
double worst_relative_error(const std::vector<float>& a, const std::vector<float>& b, size_t vocab) {
  double worst = 0;
  for (size_t row = 0; row * vocab < b.size(); ++row) {
    double diff = 0, ref = 0;
    for (size_t v = row * vocab; v < (row + 1) * vocab; ++v) {
      diff = std::max(diff, std::fabs(static_cast<double>(a[v]) - b[v]));
      ref = std::max(ref, std::fabs(static_cast<double>(b[v])));
    }
    worst = std::max(worst, diff / std::max(ref, 1e-30));
  }
  return worst;
}

int compare_with_hf(const std::string& ref_path, const std::string& h5, double rtol) {
  std::ifstream f(ref_path);
  const nlohmann::json ref = nlohmann::json::parse(f);
  std::vector<int32_t> want_tokens;
  std::vector<float> want_logits;
  for (const auto& p : ref.at("prompts")) {
    for (int32_t t : p.at("greedy_tokens").get<std::vector<int32_t>>()) want_tokens.push_back(t);
    for (const auto& row : p.at("step_logits"))
      for (float x : row.get<std::vector<float>>()) want_logits.push_back(x);
  }
  const auto got = moetron::read_int32(h5, "/requests/output_tokens");
  if (got != want_tokens) {
    std::fprintf(stderr, "%s: generated tokens differ from Hugging Face's\n", h5.c_str());
    return 1;
  }
  std::vector<int64_t> dims;
  const auto logits = moetron::read_float32(h5, "/requests/logits", &dims);
  if (logits.size() != want_logits.size()) {
    std::fprintf(stderr, "%s: %zu logits, reference has %zu\n", h5.c_str(), logits.size(), want_logits.size());
    return 1;
  }
  const double worst = worst_relative_error(logits, want_logits, static_cast<size_t>(dims.at(1)));
  if (!(worst <= rtol)) {
    std::fprintf(stderr, "%s: logits max relative error %.3g > %.3g\n", h5.c_str(), worst, rtol);
    return 1;
  }
  std::printf("matches Hugging Face: %zu tokens, logits max relative error %.3g\n", got.size(), worst);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_results A.h5 B.h5 [--rtol R] [--no-logits]\n");
    return 2;
  }
  const std::string a = argv[1], b = argv[2];
  double rtol = 1e-5;
  if (a == "--hf-reference") {
    if (argc < 4) return 2;
    for (int i = 4; i + 1 < argc; ++i)
      if (std::strcmp(argv[i], "--rtol") == 0) rtol = std::stod(argv[i + 1]);
    try {
      return compare_with_hf(b, argv[3], rtol);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "compare_results: %s\n", e.what());
      return 1;
    }
  }
  bool logits = true;
  double min_agreement = 1.0;  // share of equal output tokens required (1: all, and in order)
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--rtol") == 0 && i + 1 < argc) rtol = std::stod(argv[++i]);
    else if (std::strcmp(argv[i], "--no-logits") == 0) logits = false;
    else if (std::strcmp(argv[i], "--min-agreement") == 0 && i + 1 < argc) min_agreement = std::stod(argv[++i]);
  }
  try {
    for (const char* ds : {"/requests/output_offsets"}) {
      if (moetron::read_int64(a, ds) != moetron::read_int64(b, ds)) {
        std::fprintf(stderr, "%s differs between %s and %s\n", ds, a.c_str(), b.c_str());
        return 1;
      }
    }
    const auto ta = moetron::read_int32(a, "/requests/output_tokens");
    const auto tb = moetron::read_int32(b, "/requests/output_tokens");
    if (min_agreement < 1.0) {
      // Engines of different precision: how many tokens agree, position by position.
      size_t same = 0;
      for (size_t i = 0; i < std::min(ta.size(), tb.size()); ++i) same += ta[i] == tb[i];
      const double share = tb.empty() ? 1.0 : static_cast<double>(same) / static_cast<double>(tb.size());
      std::printf("%zu of %zu output tokens agree (%.1f%%)\n", same, tb.size(), 100 * share);
      return share >= min_agreement ? 0 : 1;
    }
    for (size_t i = 0; i < std::min(ta.size(), tb.size()); ++i) {
      if (ta[i] != tb[i]) {
        std::fprintf(stderr, "output token %zu differs: %d vs %d\n", i, ta[i], tb[i]);
        return 1;
      }
    }
    if (ta.size() != tb.size()) {
      std::fprintf(stderr, "output token counts differ: %zu vs %zu\n", ta.size(), tb.size());
      return 1;
    }
    if (logits) {
      std::vector<int64_t> da, db;
      const auto la = moetron::read_float32(a, "/requests/logits", &da);
      const auto lb = moetron::read_float32(b, "/requests/logits", &db);
      if (da != db) {
        std::fprintf(stderr, "/requests/logits shapes differ\n");
        return 1;
      }
      const double worst = worst_relative_error(la, lb, static_cast<size_t>(da.at(1)));
      if (!(worst <= rtol)) {
        std::fprintf(stderr, "logits differ: max relative error %.3g > %.3g\n", worst, rtol);
        return 1;
      }
      std::printf("same tokens; logits max relative error %.3g\n", worst);
    } else {
      std::printf("same tokens\n");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_results: %s\n", e.what());
    return 1;
  }
  return 0;
}
