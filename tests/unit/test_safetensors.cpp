// Safetensors: round trips (single and sharded), the HF fixtures, and every malformed input the
// reader must reject with an Error instead of reading out of bounds.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "model_test_helpers.hpp"
#include "moetron/model/safetensors.hpp"

namespace moetron {
namespace {

using nlohmann::json;
using testing::bytes_of;
using testing::fixture_dir;
using testing::TempDir;
using testing::throws_error;
namespace fs = std::filesystem;

// Writes a safetensors file by hand: the 8-byte length (`claimed_len`, or the real one), the
// header text and `data_bytes` zero bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes, int64_t claimed_len = -1) {
  std::ofstream out(path, std::ios::binary);
  uint64_t len = claimed_len < 0 ? header.size() : static_cast<uint64_t>(claimed_len);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(len >> (8 * i)));
  out << header << std::string(data_bytes, '\0');
}

// Three tensors: one from memory, one filled in chunks, one empty.
struct Sample {
  std::vector<float> a = {1.0f, -2.0f, 3.5f, 0.25f, 8.0f, -0.5f};
  std::vector<TensorSource> sources() const {
    TensorSource ta{"a", DType::F32, {2, 3}, a.data(), {}};
    TensorSource tb{"b", DType::I32, {5}, nullptr, [](int64_t first, int64_t count, void* dst) {
                      for (int64_t i = 0; i < count; ++i) static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(first + i) * 7;
                    }};
    TensorSource tc{"empty", DType::BF16, {0, 4}, nullptr, [](int64_t, int64_t, void*) {}};
    return {ta, tb, tc};
  }
};

TEST(Safetensors, RoundTrip) {
  TempDir dir("st");
  Sample s;
  write_safetensors(dir.file("x.safetensors"), s.sources(), {{"format", "pt"}, {"note", "hi"}});
  auto f = SafetensorsFile::open(dir.file("x.safetensors"));
  EXPECT_EQ(f->names(), (std::vector<std::string>{"a", "b", "empty"}));
  EXPECT_EQ(f->metadata().at("note"), "hi");
  TensorView a = f->get("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(a.nbytes, 24u);
  EXPECT_EQ(std::memcmp(a.data, s.a.data(), 24), 0);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data) % 8, 0u);  // header padded to 8 bytes
  EXPECT_EQ(static_cast<const float*>(a.row_data(1))[0], 0.25f);  // row 1 starts at element 3
  TensorView b = f->get("b");
  EXPECT_EQ(static_cast<const int32_t*>(b.data)[4], 28);
  EXPECT_EQ(f->get("empty").nbytes, 0u);
  Tensor t = a.as_tensor();
  EXPECT_EQ(t.shape, a.shape);
  EXPECT_EQ(t.data, a.data);
  EXPECT_TRUE(throws_error([&] { f->get("nope"); }, {"x.safetensors", "nope"}));
  // No temp file left behind.
  for (const auto& e : fs::directory_iterator(dir.str())) EXPECT_EQ(e.path().filename(), "x.safetensors");
}

TEST(Safetensors, FailedWriteLeavesNothing) {
  TempDir dir("st");
  TensorSource bad{"bad", DType::F32, {4}, nullptr, [](int64_t, int64_t, void*) { throw Error("fill failed"); }};
  EXPECT_TRUE(throws_error([&] { write_safetensors(dir.file("x.safetensors"), {bad}); }, {"fill failed"}));
  EXPECT_TRUE(fs::is_empty(dir.str()));
  TensorSource dup{"a", DType::F32, {1}, nullptr, [](int64_t, int64_t, void*) {}};
  EXPECT_TRUE(throws_error([&] { write_safetensors(dir.file("y.safetensors"), {dup, dup}); }, {"'a'", "twice"}));
}

TEST(Safetensors, ReadsHfFixtures) {
  for (const char* family : {"mixtral", "qwen2_moe", "olmoe", "qwen3_moe"}) {
    SCOPED_TRACE(family);
    Checkpoint ckpt = Checkpoint::open(fixture_dir(family));
    EXPECT_FALSE(ckpt.sharded());
    TensorView embed = ckpt.get_checked("model.embed_tokens.weight", {256, 64});
    EXPECT_EQ(embed.dtype, DType::BF16);
    EXPECT_EQ(embed.file, fixture_dir(family) + "/model.safetensors");
    float first = load_as_float(embed.data, embed.dtype, 0);
    EXPECT_TRUE(std::isfinite(first) && first != 0.0f);
  }
}

TEST(Safetensors, Sharded) {
  TempDir dir("st");
  Sample s;
  // 24 + 20 + 0 bytes with a 30-byte limit: [a], [b, empty].
  auto files = write_sharded_safetensors(dir.str(), s.sources(), 30);
  EXPECT_EQ(files, (std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                             "model.safetensors.index.json"}));
  Checkpoint ckpt = Checkpoint::open(dir.str());
  EXPECT_TRUE(ckpt.sharded());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b", "empty"}));
  EXPECT_EQ(ckpt.data_bytes(), 44u);
  EXPECT_EQ(ckpt.get("a").file, dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(ckpt.get("b").file, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(static_cast<const int32_t*>(ckpt.get("b").data)[2], 14);
  std::ifstream in(dir.file("model.safetensors.index.json"));
  EXPECT_EQ(json::parse(in)["metadata"]["total_size"], 44);

  // Everything fits: one file, and the stale index goes.
  EXPECT_EQ(write_sharded_safetensors(dir.str(), s.sources(), 1000), (std::vector<std::string>{"model.safetensors"}));
  EXPECT_FALSE(fs::exists(dir.file("model.safetensors.index.json")));
  Checkpoint single = Checkpoint::open(dir.str());
  EXPECT_FALSE(single.sharded());
  EXPECT_EQ(bytes_of(single.get("a")), bytes_of(ckpt.get("a")));
}

TEST(Safetensors, MissingAndMisshapedTensors) {
  TempDir dir("st");
  Sample s;
  write_sharded_safetensors(dir.str(), s.sources(), 1000);
  Checkpoint ckpt = Checkpoint::open(dir.str());
  EXPECT_TRUE(throws_error([&] { ckpt.get("model.norm.weight"); }, {dir.str(), "model.norm.weight"}));
  EXPECT_TRUE(throws_error([&] { ckpt.get_checked("a", {3, 2}); }, {"'a'", "[2, 3]", "[3, 2]"}));
  EXPECT_TRUE(throws_error([] { Checkpoint::open("/nonexistent-dir"); }, {"/nonexistent-dir"}));
  TempDir empty("st");
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(empty.str()); }, {empty.str(), "model.safetensors"}));
}

TEST(Safetensors, BadIndex) {
  TempDir dir("st");
  Sample s;
  write_sharded_safetensors(dir.str(), s.sources(), 30);
  auto write_index = [&](const json& weight_map) {
    std::ofstream(dir.file("model.safetensors.index.json")) << json{{"weight_map", weight_map}}.dump();
  };
  write_index({{"a", "model-00001-of-00002.safetensors"}, {"ghost", "model-00001-of-00002.safetensors"}});
  Checkpoint ckpt = Checkpoint::open(dir.str());
  EXPECT_TRUE(throws_error([&] { ckpt.get("ghost"); }, {"ghost", "model-00001-of-00002.safetensors", "does not contain"}));
  write_index({{"a", "model-00009-of-00009.safetensors"}});
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(dir.str()); }, {"model-00009-of-00009.safetensors", "does not exist"}));
  write_index({{"a", "../../etc/passwd"}});
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(dir.str()); }, {"../../etc/passwd"}));
  write_index({{"a", 3}});
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(dir.str()); }, {"weight_map", "'a'"}));
  std::ofstream(dir.file("model.safetensors.index.json")) << "{not json";
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(dir.str()); }, {"model.safetensors.index.json", "JSON"}));
}

// One malformed file per case; each must end in an Error naming the file and what is wrong.
struct BadFile {
  const char* what;
  std::string header;
  size_t data_bytes;
  int64_t claimed_len;
  std::vector<std::string> fragments;
};

TEST(Safetensors, RejectsMalformedFiles) {
  TempDir dir("st");
  const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::vector<BadFile> cases = {
      {"header length past end", "{}", 0, 1000, {"header length 1000", "past the end"}},
      {"huge header length", "{}", 0, int64_t(1) << 40, {"header length", "limit"}},
      {"not JSON", "{\"t\": [", 0, -1, {"not valid JSON"}},
      {"not an object", "[1,2]", 0, -1, {"not a JSON object"}},
      {"entry not an object", R"({"t": 5})", 0, -1, {"'t'", "not a JSON object"}},
      {"missing dtype", R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4, -1, {"'t'", "dtype"}},
      {"unknown dtype", R"({"t":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", 4, -1, {"'t'", "Q4"}},
      {"missing shape", R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", 4, -1, {"'t'", "shape"}},
      {"negative dim", R"({"t":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, -1, {"'t'", "non-negative"}},
      {"float dim", R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4, -1, {"'t'", "integer"}},
      {"bad offsets", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4, -1, {"'t'", "data_offsets"}},
      {"offsets out of range", "{" + ok_entry + "}", 4, -1, {"'t'", "past the data region"}},
      {"offsets backwards", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8, -1, {"'t'", "backwards"}},
      {"size mismatch", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, -1,
       {"'t'", "needs 12 bytes", "span 8"}},
      {"shape overflow", R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8, -1,
       {"'t'", "overflow"}},
      {"overlap", "{" + ok_entry + R"(,"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, -1,
       {"'t'", "'u'", "overlap"}},
      {"metadata not strings", R"({"__metadata__":{"k":1}})", 0, -1, {"__metadata__"}},
      {"repeated tensor", "{" + ok_entry + "," + ok_entry + "}", 8, -1, {"key 't' appears twice"}},
      {"repeated field", R"({"t":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8, -1,
       {"key 'dtype' appears twice"}},
      // The header padded with a space, its length given one short: the data start shifts by one.
      {"header length one short", "{" + ok_entry + "} ", 8, int64_t(("{" + ok_entry + "}").size()),
       {"holds 9 bytes", "cover 8", "trailing"}},
      {"trailing bytes", "{" + ok_entry + "}", 12, -1, {"holds 12 bytes", "cover 8"}},
      {"gap before a tensor", R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, -1,
       {"bytes 0..4", "no tensor", "'t'"}},
  };
  for (const BadFile& c : cases) {
    SCOPED_TRACE(c.what);
    std::string path = dir.file("bad.safetensors");
    write_raw(path, c.header, c.data_bytes, c.claimed_len);
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back(path);
    ::testing::AssertionResult r = ::testing::AssertionSuccess();
    try {
      SafetensorsFile::open(path);
      r = ::testing::AssertionFailure() << "accepted";
    } catch (const Error& e) {
      for (const std::string& f : fragments)
        if (std::string(e.what()).find(f) == std::string::npos)
          r = ::testing::AssertionFailure() << "message lacks '" << f << "': " << e.what();
    }
    EXPECT_TRUE(r);
  }
}

TEST(Safetensors, RejectsTruncatedFile) {
  TempDir dir("st");
  std::ofstream(dir.file("short.safetensors"), std::ios::binary) << "abc";
  EXPECT_TRUE(throws_error([&] { SafetensorsFile::open(dir.file("short.safetensors")); },
                           {"short.safetensors", "truncated"}));
  // A good file cut short: the header now runs past its end, or the data does.
  Sample s;
  write_safetensors(dir.file("x.safetensors"), s.sources());
  uintmax_t full = fs::file_size(dir.file("x.safetensors"));
  fs::resize_file(dir.file("x.safetensors"), full - 4);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile::open(dir.file("x.safetensors")); }, {"x.safetensors", "past"}));
  fs::resize_file(dir.file("x.safetensors"), 20);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile::open(dir.file("x.safetensors")); }, {"x.safetensors", "past"}));
  EXPECT_TRUE(throws_error([&] { SafetensorsFile::open(dir.file("none.safetensors")); }, {"none.safetensors"}));
}

TEST(Safetensors, ZeroSizeTensorsMayShareAnOffset) {
  TempDir dir("st");
  write_raw(dir.file("z.safetensors"),
            R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
            8);
  EXPECT_EQ(SafetensorsFile::open(dir.file("z.safetensors"))->names().size(), 2u);
}

// Special files never block the reader, and a directory where a file belongs is named.
TEST(Safetensors, RefusesSpecialFilesWithoutBlocking) {
  TempDir dir("st");
  ASSERT_EQ(mkfifo(dir.file("model.safetensors").c_str(), 0644), 0);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile::open(dir.file("model.safetensors")); },
                           {"model.safetensors", "not a regular file"}));
  TempDir sharded("st");
  fs::create_directory(sharded.file("model.safetensors.index.json"));
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(sharded.str()); },
                           {"model.safetensors.index.json", "cannot read the shard index", "directory"}));
  fs::remove(sharded.file("model.safetensors.index.json"));
  ASSERT_EQ(mkfifo(sharded.file("model.safetensors.index.json").c_str(), 0644), 0);
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(sharded.str()); },
                           {"model.safetensors.index.json", "FIFO"}));
}

TEST(Safetensors, IndexWithRepeatedKeyRefused) {
  TempDir dir("st");
  std::ofstream(dir.file("model.safetensors.index.json"))
      << R"({"weight_map": {"a": "model-00001-of-00001.safetensors", "a": "model-00001-of-00001.safetensors"}})";
  EXPECT_TRUE(throws_error([&] { Checkpoint::open(dir.str()); },
                           {"model.safetensors.index.json", "key 'a' appears twice"}));
}

}  // namespace
}  // namespace moetron
