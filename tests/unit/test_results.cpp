#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/hdf5.hpp"
#include "moetron/io/results.hpp"

namespace moetron {
namespace {

using test::error_of;

// A fresh, empty directory per test, removed (with whatever is left in it) afterwards.
class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "moetron_results_XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    ASSERT_NE(mkdtemp(buf.data()), nullptr);
    dir_ = buf.data();
  }
  void TearDown() override {
    chmod(dir_.c_str(), 0700);
    for (const std::string& name : entries()) std::remove((dir_ + "/" + name).c_str());
    rmdir(dir_.c_str());
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    DIR* d = opendir(dir_.c_str());
    if (!d) return names;
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    closedir(d);
    return names;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

// Three requests (one stopped by EOS), logits over a vocabulary of 4, two MoE layers around a
// dense one, and two ranks: every part of the schema holds data.
RunResults full_results() {
  RunResults r;
  r.meta.command_line = "moetron run --model m --prompts p.jsonl --out r.h5";
  r.meta.host = "node01";
  r.meta.device = "cpu";
  r.meta.backend = "cpu";
  r.meta.plan = "pp1 tp2 ep2 dp1";
  r.meta.model_config = "{\"family\":\"olmoe\"}";
  r.meta.created_utc = "2026-01-31T12:00:00Z";
  r.meta.extra["note"] = "unit test";
  r.logits_vocab_size = 4;
  r.startup = {2.5, 123456789, 0.25, 1.5, 3, 4.75};
  r.predictions.figures = "h200";
  r.predictions.chosen = "pp=1,tp=1,dp=2,ep=2";
  r.predictions.explanation = "pp=1,tp=1,dp=2,ep=2 wins";
  r.predictions.candidates = {
      {"pp=1,tp=1,dp=2,ep=2", true, "", 900.0, 1000.0, 5e4, 2e-3, 0.01, 2e-3, 1 << 30, 8, "compute 60%"},
      {"pp=2,tp=1,dp=1,ep=1", false, "weights do not fit", 0, 0, 0, 0, 0, 0, int64_t{3} << 30, 0, ""}};
  auto request = [](std::string id, std::vector<int32_t> prompt, std::vector<int32_t> out,
                    FinishReason why, float logit_base) {
    RequestResult q;
    q.id = std::move(id);
    q.prompt_tokens = std::move(prompt);
    q.output_tokens = std::move(out);
    for (size_t t = 0; t < q.output_tokens.size(); ++t) q.token_times_s.push_back(0.5 + 0.25 * t);
    q.ttft_s = q.token_times_s.front();
    q.e2e_s = q.token_times_s.back() + 0.125;
    q.finish_reason = why;
    for (size_t i = 0; i < q.output_tokens.size() * 4; ++i) q.logits.push_back(logit_base + i);
    return q;
  };
  r.requests.push_back(request("a", {1, 2, 3}, {7, 8}, FinishReason::Length, 0));
  r.requests.push_back(request("b", {4}, {9, 10, 2}, FinishReason::Eos, 100));
  r.requests.push_back(request("c", {5, 6}, {11}, FinishReason::Length, 200));
  r.steps = {{3, 6, true, 0.5}, {3, 3, false, 0.25}, {2, 2, false, 0.25}};
  r.expert_tokens = {{1, 2, 3, 4}, {0, 0, 0, 0}, {5, 6, 7, 8}};
  // Two redundant experts: layer 0 copies expert 3 to set 0; the dense layer none; layer 2
  // copies 3 to set 0 and 1 to set 1.
  r.redundant_experts = 2;
  r.replica_placement = {3, 0, -1, -1, -1, -1, -1, -1, 3, 0, 1, 1};
  r.total_seconds = 2.0;
  RankRecord r0{0, 0, 0, 0, 3, 0, 2, 0, 8, 1000, 2000, "pp0 tp0 ep0", "node01", "cuda:0 (H) GPU-a"};
  RankRecord r1{0, 0, 1, 0, 3, 2, 4, 8, 16, 3000, 4000, "pp0 tp1 ep1", "node02", "cuda:0 (H) GPU-b"};
  r0.expert_tokens = 21;
  r0.expert_seconds = 0.125;
  r1.expert_tokens = 15;
  r1.expert_seconds = 0.0625;
  r0.decode_comm_wait_seconds = 0.25;
  r1.decode_comm_wait_seconds = 0.5;
  r0.prefill_comm_wait_seconds = 0.75;
  r1.prefill_comm_wait_seconds = 1.5;
  r.ranks = {r0, r1};
  // Two windows (steps [0, 2) and [2, 3)) that add up to expert_tokens, and layer 0's tokens
  // choosing experts {0, 3} and {1, 2}.
  r.routing.tokens_by_window = {1, 2, 3, 3, 0, 0, 0, 0, 5, 6, 0, 8,  //
                                0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 0};
  r.routing.window_steps = {0, 2, 2, 3};
  r.routing.coactivation.assign(3 * 4 * 4, 0);
  r.routing.coactivation[0 * 4 + 3] = r.routing.coactivation[3 * 4 + 0] = 1;
  r.routing.coactivation[1 * 4 + 2] = r.routing.coactivation[2 * 4 + 1] = 1;
  return r;
}

RunResults minimal_results() {
  RunResults r = full_results();
  r.logits_vocab_size = 0;
  for (RequestResult& q : r.requests) q.logits.clear();
  r.ranks.clear();
  r.predictions = {};
  r.redundant_experts = 0;
  r.replica_placement.clear();
  return r;
}

TEST_F(ResultsTest, EveryDatasetAndAttributeReadsBack) {
  RunResults r = full_results();
  std::string out = path("r.h5");
  write_results(out, r);
  EXPECT_EQ(entries(), std::vector<std::string>{"r.h5"});  // no temporary file left behind

  EXPECT_EQ(read_string_attribute(out, "/", "moetron_version"), kVersion);
  EXPECT_EQ(read_string_attribute(out, "/", "git_commit"), kGitCommit);
  EXPECT_EQ(read_string_attribute(out, "/", "command_line"), r.meta.command_line);
  EXPECT_EQ(read_string_attribute(out, "/", "host"), "node01");
  EXPECT_EQ(read_string_attribute(out, "/", "device"), "cpu");
  EXPECT_EQ(read_string_attribute(out, "/", "backend"), "cpu");
  EXPECT_EQ(read_string_attribute(out, "/", "plan"), r.meta.plan);
  EXPECT_EQ(read_string_attribute(out, "/", "model_config"), r.meta.model_config);
  EXPECT_EQ(read_string_attribute(out, "/", "created_utc"), "2026-01-31T12:00:00Z");
  EXPECT_EQ(read_string_attribute(out, "/", "note"), "unit test");

  EXPECT_EQ(read_strings(out, "/requests/ids"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(read_int32(out, "/requests/prompt_tokens"), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(read_int64(out, "/requests/prompt_offsets"), (std::vector<int64_t>{0, 3, 4, 6}));
  EXPECT_EQ(read_int32(out, "/requests/output_tokens"), (std::vector<int32_t>{7, 8, 9, 10, 2, 11}));
  EXPECT_EQ(read_int64(out, "/requests/output_offsets"), (std::vector<int64_t>{0, 2, 5, 6}));
  EXPECT_EQ(read_float64(out, "/requests/token_times_s"),
            (std::vector<double>{0.5, 0.75, 0.5, 0.75, 1.0, 0.5}));
  EXPECT_EQ(read_float64(out, "/requests/ttft_s"), (std::vector<double>{0.5, 0.5, 0.5}));
  EXPECT_EQ(read_float64(out, "/requests/e2e_s"), (std::vector<double>{0.875, 1.125, 0.625}));
  EXPECT_EQ(read_strings(out, "/requests/finish_reason"),
            (std::vector<std::string>{"length", "eos", "length"}));
  std::vector<int64_t> dims;
  std::vector<float> logits = read_float32(out, "/requests/logits", &dims);
  EXPECT_EQ(dims, (std::vector<int64_t>{6, 4}));
  std::vector<float> want;
  for (const RequestResult& q : r.requests) want.insert(want.end(), q.logits.begin(), q.logits.end());
  EXPECT_EQ(logits, want);

  EXPECT_EQ(read_int32(out, "/steps/batch_size"), (std::vector<int32_t>{3, 3, 2}));
  EXPECT_EQ(read_int32(out, "/steps/num_tokens"), (std::vector<int32_t>{6, 3, 2}));
  EXPECT_EQ(h5::File::open_read(out).read<int8_t>("/steps/is_prefill"),
            (std::vector<int8_t>{1, 0, 0}));
  EXPECT_EQ(read_float64(out, "/steps/seconds"), (std::vector<double>{0.5, 0.25, 0.25}));

  EXPECT_EQ(read_dims(out, "/experts/tokens"), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(read_int64(out, "/experts/tokens"),
            (std::vector<int64_t>{1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8}));

  EXPECT_EQ(read_float64_attribute(out, "/summary", "total_seconds"), 2.0);
  EXPECT_EQ(read_int64_attribute(out, "/summary", "requests"), 3);
  EXPECT_EQ(read_int64_attribute(out, "/summary", "output_tokens"), 6);
  EXPECT_EQ(read_float64_attribute(out, "/summary", "output_tokens_per_s"), 3.0);
  EXPECT_EQ(read_float64_attribute(out, "/summary", "total_tokens_per_s"), 6.0);

  EXPECT_EQ(read_string_attribute(out, "/ranks", "plan"), r.meta.plan);
  EXPECT_EQ(read_int64(out, "/ranks/pp_rank"), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(read_int64(out, "/ranks/dp_rank"), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(read_int64(out, "/ranks/tp_rank"), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(read_int64(out, "/ranks/layer_begin"), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(read_int64(out, "/ranks/layer_end"), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(read_int64(out, "/ranks/expert_begin"), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(read_int64(out, "/ranks/expert_end"), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(read_int64(out, "/ranks/q_head_begin"), (std::vector<int64_t>{0, 8}));
  EXPECT_EQ(read_int64(out, "/ranks/q_head_end"), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(read_int64(out, "/ranks/bytes_sent"), (std::vector<int64_t>{1000, 3000}));
  EXPECT_EQ(read_int64(out, "/ranks/bytes_received"), (std::vector<int64_t>{2000, 4000}));
  EXPECT_EQ(read_strings(out, "/ranks/description"),
            (std::vector<std::string>{"pp0 tp0 ep0", "pp0 tp1 ep1"}));
  EXPECT_EQ(read_strings(out, "/ranks/host"), (std::vector<std::string>{"node01", "node02"}));
  EXPECT_EQ(read_strings(out, "/ranks/device"),
            (std::vector<std::string>{"cuda:0 (H) GPU-a", "cuda:0 (H) GPU-b"}));
}

TEST_F(ResultsTest, OptionalPartsAreOmittedAndTimestampIsStamped) {
  RunResults r = minimal_results();
  r.meta.created_utc.clear();
  r.total_seconds = 0;
  write_results(path("r.h5"), r);
  h5::File f = h5::File::open_read(path("r.h5"));
  EXPECT_TRUE(f.exists("/requests/output_tokens"));
  EXPECT_FALSE(f.exists("/requests/logits"));
  EXPECT_FALSE(f.exists("/ranks"));
  EXPECT_FALSE(f.exists("/ranks/pp_rank"));
  std::string stamp = f.string_attribute("/", "created_utc");
  EXPECT_EQ(stamp.size(), 20u) << stamp;
  EXPECT_EQ(stamp.back(), 'Z') << stamp;
  // No time, no rate: NaN rather than a number that looks measured.
  EXPECT_TRUE(std::isnan(f.float64_attribute("/summary", "output_tokens_per_s")));
}

TEST_F(ResultsTest, EmptyRunWritesEmptyDatasets) {
  RunResults r;
  write_results(path("r.h5"), r);
  EXPECT_EQ(read_int64(path("r.h5"), "/requests/output_offsets"), (std::vector<int64_t>{0}));
  EXPECT_TRUE(read_int32(path("r.h5"), "/requests/output_tokens").empty());
  EXPECT_TRUE(read_strings(path("r.h5"), "/requests/ids").empty());
  EXPECT_EQ(read_dims(path("r.h5"), "/experts/tokens"), (std::vector<int64_t>{0, 0}));
}

TEST_F(ResultsTest, FailedWriteLeavesNoFileAndKeepsTheOldOne) {
  std::string out = path("r.h5");
  RunResults r = full_results();
  r.meta.extra["bad"] = std::string("nul\0byte", 8);  // fails inside HDF5 writing, after create
  std::string msg = error_of([&] { write_results(out, r); });
  EXPECT_NE(msg.find("cannot write " + out), std::string::npos) << msg;
  EXPECT_NE(msg.find("NUL"), std::string::npos) << msg;
  EXPECT_TRUE(entries().empty());

  // An earlier complete file stays as it was.
  write_results(out, minimal_results());
  EXPECT_ANY_THROW(write_results(out, r));
  EXPECT_EQ(entries(), std::vector<std::string>{"r.h5"});
  EXPECT_FALSE(h5::File::open_read(out).exists("/ranks"));
}

TEST_F(ResultsTest, InconsistentResultsAreRefused) {
  auto refused = [&](auto mutate, const std::string& words) {
    RunResults r = full_results();
    mutate(r);
    std::string msg = error_of([&] { write_results(path("r.h5"), r); });
    EXPECT_NE(msg.find(words), std::string::npos) << msg;
    EXPECT_TRUE(entries().empty());
  };
  refused([](RunResults& r) { r.requests[1].token_times_s.pop_back(); },
          "request 'b' has 2 token times for 3 output tokens");
  refused([](RunResults& r) { r.requests[2].logits.pop_back(); }, "request 'c' has 3 logits");
  refused([](RunResults& r) { r.requests[2].id = "a"; }, "request 'a' appears twice");
  refused([](RunResults& r) { r.expert_tokens[2].pop_back(); }, "expert_tokens row 2 has 3");
  refused([](RunResults& r) { r.meta.extra["plan"] = "x"; }, "'plan' is empty or taken");
}

TEST_F(ResultsTest, UnwritablePathIsAnError) {
  std::string out = path("missing/r.h5");
  std::string msg = error_of([&] { write_results(out, full_results()); });
  EXPECT_NE(msg.find("cannot write " + out), std::string::npos) << msg;
  // The file is built in memory; the write to disk is ours and says why it failed.
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
}

TEST_F(ResultsTest, CheckOutputWritable) {
  EXPECT_NO_THROW(check_output_writable(path("r.h5")));
  EXPECT_TRUE(entries().empty());  // the probe is gone

  std::string msg = error_of([&] { check_output_writable(path("missing/r.h5")); });
  EXPECT_NE(msg.find("directory " + path("missing")), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;

  msg = error_of([&] { check_output_writable(dir_); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
  msg = error_of([&] { check_output_writable(dir_ + "/"); });
  EXPECT_NE(msg.find("names a directory"), std::string::npos) << msg;

  std::ofstream(path("plain")) << "x";
  msg = error_of([&] { check_output_writable(path("plain/r.h5")); });
  EXPECT_NE(msg.find("is not a directory"), std::string::npos) << msg;

  if (geteuid() != 0) {  // root writes anywhere
    ASSERT_EQ(chmod(dir_.c_str(), 0500), 0);
    msg = error_of([&] { check_output_writable(path("r.h5")); });
    EXPECT_NE(msg.find("cannot create files in directory " + dir_), std::string::npos) << msg;
    EXPECT_NE(msg.find("Permission denied"), std::string::npos) << msg;
    chmod(dir_.c_str(), 0700);
  }
}

TEST_F(ResultsTest, ReaderRefusesWrongTypesAndNames) {
  std::string out = path("r.h5");
  write_results(out, full_results());
  std::string msg = error_of([&] { read_int32(out, "/requests/output_offsets"); });
  EXPECT_NE(msg.find(out + ":/requests/output_offsets is stored as int64, not int32"),
            std::string::npos) << msg;
  msg = error_of([&] { read_float64(out, "/requests/no_such"); });
  EXPECT_NE(msg.find(out + ": cannot open dataset /requests/no_such"), std::string::npos) << msg;
  msg = error_of([&] { read_string_attribute(out, "/summary", "requests"); });
  EXPECT_NE(msg.find("not strings"), std::string::npos) << msg;
  msg = error_of([&] { read_int64(path("absent.h5"), "/x"); });
  EXPECT_NE(msg.find(path("absent.h5") + ": cannot open HDF5 file"), std::string::npos) << msg;
}

// ---- the schema, as docs/results-schema.md states it and as h5dump sees the file --------------

struct SchemaEntry {
  std::string type;  // int8 ... float64, string
  int rank = 0;      // 0 for scalars
  bool always = true;
};

// Rows of the tables in the doc: | `/requests/ids` | string | [n] | always | meaning |
std::map<std::string, SchemaEntry> documented_schema() {
  std::ifstream doc(std::string(MOETRON_SOURCE_DIR) + "/docs/results-schema.md");
  EXPECT_TRUE(doc) << "cannot read docs/results-schema.md";
  std::map<std::string, SchemaEntry> schema;
  for (std::string line; std::getline(doc, line);) {
    if (line.rfind("| `/", 0) != 0) continue;
    std::vector<std::string> cells;
    std::istringstream row(line.substr(1));
    for (std::string cell; std::getline(row, cell, '|');) {
      cell.erase(0, cell.find_first_not_of(' '));
      cell.erase(cell.find_last_not_of(' ') + 1);
      cells.push_back(cell);
    }
    EXPECT_GE(cells.size(), 4u) << line;
    if (cells.size() < 4) continue;
    SchemaEntry e;
    e.type = cells[1];
    e.rank = cells[2] == "scalar" ? 0 : 1 + static_cast<int>(std::count(cells[2].begin(), cells[2].end(), ','));
    e.always = cells[3] == "always";
    schema[cells[0].substr(1, cells[0].size() - 2)] = e;
  }
  return schema;
}

// What `h5dump -H` reports: each dataset and attribute with its type and rank, named like the
// doc ("/group/dataset", "/group@attribute").
std::map<std::string, SchemaEntry> dumped_schema(const std::string& file) {
  std::map<std::string, SchemaEntry> found;
  FILE* pipe = popen(("h5dump -H '" + file + "' 2>&1").c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  if (!pipe) return found;
  std::string text;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) text.append(buf, n);
  EXPECT_EQ(pclose(pipe), 0) << text;

  const std::map<std::string, std::string> types = {
      {"H5T_STD_I8LE", "int8"},      {"H5T_STD_I32LE", "int32"},   {"H5T_STD_I64LE", "int64"},
      {"H5T_IEEE_F32LE", "float32"}, {"H5T_IEEE_F64LE", "float64"}, {"H5T_STRING", "string"}};
  std::vector<std::string> groups;  // open GROUP/DATASET/ATTRIBUTE names ("" for other blocks)
  std::vector<std::string> kinds;
  std::string current;  // the dataset or attribute whose header is being read
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string word, rest;
    words >> word;
    std::getline(words, rest);
    if (word == "}") {
      if (!kinds.empty()) kinds.pop_back(), groups.pop_back();
      continue;
    }
    if (word == "GROUP" || word == "DATASET" || word == "ATTRIBUTE") {
      std::string name = rest.substr(rest.find('"') + 1);
      name = name.substr(0, name.find('"'));
      std::string parent;
      for (size_t i = 0; i < groups.size(); ++i)
        if (kinds[i] == "GROUP") parent += (groups[i] == "/" ? "" : "/" + groups[i]);
      if (word == "GROUP")
        current.clear();
      else if (word == "DATASET")
        current = parent + "/" + name;
      else
        current = (kinds.empty() || kinds.back() == "GROUP" ? (parent.empty() ? "/" : parent)
                                                              : current) + "@" + name;
      kinds.push_back(word);
      groups.push_back(name);
      continue;
    }
    if (line.find('{') != std::string::npos && line.find('}') == std::string::npos)
      kinds.push_back(""), groups.push_back("");  // e.g. DATATYPE H5T_STRING { ... }
    if (current.empty()) continue;
    if (word == "DATATYPE") {
      std::istringstream t(rest);
      std::string h5type;
      t >> h5type;
      found[current].type = types.count(h5type) ? types.at(h5type) : h5type;
    } else if (word == "STRSIZE" && rest.find("H5T_VARIABLE") == std::string::npos) {
      found[current].type = "fixed-length string";
    } else if (word == "CSET" && rest.find("H5T_CSET_UTF8") == std::string::npos) {
      found[current].type = "non-UTF-8 string";
    } else if (word == "DATASPACE") {
      size_t open = rest.find('(');
      found[current].rank =
          open == std::string::npos
              ? 0
              : 1 + static_cast<int>(std::count(rest.begin() + open, rest.begin() + rest.find(')'), ','));
    }
  }
  return found;
}

bool have_h5dump() { return std::system("h5dump --version >/dev/null 2>&1") == 0; }

TEST_F(ResultsTest, StartupTimesRoundTrip) {
  write_results(path("startup.h5"), full_results());
  const std::string f = path("startup.h5");
  EXPECT_DOUBLE_EQ(read_float64_attribute(f, "/startup", "weights_seconds"), 2.5);
  EXPECT_EQ(read_int64_attribute(f, "/startup", "weights_bytes_read"), 123456789);
  EXPECT_DOUBLE_EQ(read_float64_attribute(f, "/startup", "kv_cache_seconds"), 0.25);
  EXPECT_DOUBLE_EQ(read_float64_attribute(f, "/startup", "graphs_seconds"), 1.5);
  EXPECT_EQ(read_int64_attribute(f, "/startup", "graphs"), 3);
  EXPECT_DOUBLE_EQ(read_float64_attribute(f, "/startup", "total_seconds"), 4.75);
}

TEST_F(ResultsTest, ExpertRoutingAndRankWorkReadBack) {
  RunResults r = full_results();
  const std::string out = path("r.h5");
  write_results(out, r);
  EXPECT_EQ(read_int64(out, "/experts/tokens_by_window"), r.routing.tokens_by_window);
  EXPECT_EQ(read_dims(out, "/experts/tokens_by_window"), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(read_int64(out, "/experts/window_steps"), (std::vector<int64_t>{0, 2, 2, 3}));
  EXPECT_EQ(read_dims(out, "/experts/window_steps"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(read_int64(out, "/experts/coactivation"), r.routing.coactivation);
  EXPECT_EQ(read_dims(out, "/experts/coactivation"), (std::vector<int64_t>{3, 4, 4}));
  EXPECT_EQ(read_int64(out, "/ranks/expert_tokens"), (std::vector<int64_t>{21, 15}));
  EXPECT_EQ(read_float64(out, "/ranks/expert_seconds"), (std::vector<double>{0.125, 0.0625}));
  EXPECT_EQ(read_float64(out, "/ranks/decode_comm_wait_seconds"), (std::vector<double>{0.25, 0.5}));
  EXPECT_EQ(read_float64(out, "/ranks/prefill_comm_wait_seconds"), (std::vector<double>{0.75, 1.5}));
  EXPECT_EQ(read_int64(out, "/experts/replicas"), r.replica_placement);
  EXPECT_EQ(read_dims(out, "/experts/replicas"), (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(read_int64_attribute(out, "/experts/replicas", "redundant_experts"), 2);
  RunResults short_record = full_results();
  short_record.replica_placement.pop_back();
  EXPECT_NE(error_of([&] { write_results(path("short.h5"), short_record); }).find("replica placement"),
            std::string::npos);

  // Without routing details the datasets are still there, with no windows and zero pairs.
  RunResults bare = full_results();
  bare.routing = ExpertRouting{};
  write_results(path("bare.h5"), bare);
  EXPECT_EQ(read_dims(path("bare.h5"), "/experts/tokens_by_window"), (std::vector<int64_t>{0, 3, 4}));
  EXPECT_EQ(read_int64(path("bare.h5"), "/experts/coactivation"), std::vector<int64_t>(48, 0));

  RunResults wrong = full_results();
  wrong.routing.tokens_by_window.pop_back();
  EXPECT_NE(error_of([&] { write_results(path("wrong.h5"), wrong); }).find("counts by window"), std::string::npos);
}

TEST_F(ResultsTest, SchemaMatchesDocs) {
  if (!have_h5dump()) GTEST_SKIP() << "h5dump not found";
  std::map<std::string, SchemaEntry> doc = documented_schema();
  ASSERT_GT(doc.size(), 40u) << "the doc's tables were not found";

  RunResults full = full_results();
  write_results(path("full.h5"), full);
  std::map<std::string, SchemaEntry> dumped = dumped_schema(path("full.h5"));
  for (const auto& [name, want] : doc) {
    ASSERT_TRUE(dumped.count(name)) << name << " is documented but not in the file";
    EXPECT_EQ(dumped[name].type, want.type) << name;
    EXPECT_EQ(dumped[name].rank, want.rank) << name;
  }
  for (const auto& [name, got] : dumped) {
    bool extra = name.rfind("/@", 0) == 0 && full.meta.extra.count(name.substr(2));
    EXPECT_TRUE(doc.count(name) || extra) << name << " is in the file but not documented";
  }

  write_results(path("minimal.h5"), minimal_results());
  std::map<std::string, SchemaEntry> minimal = dumped_schema(path("minimal.h5"));
  for (const auto& [name, want] : doc)
    EXPECT_EQ(minimal.count(name), want.always ? 1u : 0u) << name;
}

}  // namespace
}  // namespace moetron
