#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "error_of.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/prompts.hpp"

namespace moetron {
namespace {

using test::error_of;

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_prompts(text, "p.jsonl"); });
}

TEST(Prompts, ParsesEveryField) {
  auto specs = parse_prompts(
      "{\"id\": \"a\", \"prompt_tokens\": [1, 2, 3], \"max_new_tokens\": 8, \"temperature\": 0.5,"
      " \"top_k\": 40, \"top_p\": 0.9, \"seed\": 18446744073709551615, \"ignore_eos\": true}\n"
      "\n"
      "   \r\n"
      "{\"id\": 17, \"prompt_tokens\": [0]}\r\n"
      "{\"prompt_tokens\": [5, 6]}\n",
      "p.jsonl");
  ASSERT_EQ(specs.size(), 3u);
  const RequestSpec& a = specs[0];
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(a.max_new_tokens, 8);
  EXPECT_FLOAT_EQ(*a.temperature, 0.5f);
  EXPECT_EQ(*a.top_k, 40);
  EXPECT_FLOAT_EQ(*a.top_p, 0.9f);
  EXPECT_EQ(*a.seed, 18446744073709551615ull);
  EXPECT_TRUE(*a.ignore_eos);
  EXPECT_EQ(a.line, 1);

  const RequestSpec& b = specs[1];
  EXPECT_EQ(b.id, "17");
  EXPECT_EQ(b.line, 4);
  EXPECT_EQ(b.max_new_tokens, -1);
  EXPECT_FALSE(b.temperature || b.top_p || b.top_k || b.seed || b.ignore_eos);

  EXPECT_EQ(specs[2].id, "2");  // the 0-based request index, blank lines not counted
  EXPECT_EQ(specs[2].line, 5);
}

TEST(Prompts, AcceptsGreedyAndBoundaryValues) {
  auto specs = parse_prompts(
      "\xEF\xBB\xBF{\"prompt_tokens\": [2147483647], \"temperature\": 0, \"top_p\": 1, \"top_k\": 0,"
      " \"seed\": 0, \"max_new_tokens\": 1}",
      "p.jsonl");
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].prompt_tokens[0], 2147483647);
  EXPECT_EQ(*specs[0].temperature, 0.0f);
  EXPECT_EQ(*specs[0].top_p, 1.0f);
}

// Each bad second line, the field its message must name, and a word of the reason.
struct BadLine {
  const char* line;
  const char* field;
  const char* reason;
};
const BadLine kBadLines[] = {
    {"{\"prompt_tokens\": [1,]}", "invalid JSON", "column"},
    {"{\"prompt_tokens\": [1]} trailing", "invalid JSON", "column"},
    {"[1, 2, 3]", "JSON object", "array"},
    {"42", "JSON object", "number"},
    {"{\"max_new_tokens\": 4}", "'prompt_tokens'", "missing"},
    {"{\"prompt_tokens\": \"hello\"}", "'prompt_tokens'", "array"},
    {"{\"prompt_tokens\": 7}", "'prompt_tokens'", "array"},
    {"{\"prompt_tokens\": [1, 2.5]}", "'prompt_tokens[1]'", "integer"},
    {"{\"prompt_tokens\": [1, \"2\"]}", "'prompt_tokens[1]'", "integer"},
    {"{\"prompt_tokens\": [-1]}", "'prompt_tokens[0]'", "integer in [0, "},
    {"{\"prompt_tokens\": [2147483648]}", "'prompt_tokens[0]'", "integer in [0, "},
    {"{\"prompt_tokens\": [1], \"max_new_tokens\": -3}", "'max_new_tokens'", ">= 1"},
    {"{\"prompt_tokens\": [1], \"max_new_tokens\": 0}", "'max_new_tokens'", ">= 1"},
    {"{\"prompt_tokens\": [1], \"max_new_tokens\": 4.0}", "'max_new_tokens'", "integer"},
    {"{\"prompt_tokens\": [1], \"max_new_tokens\": \"4\"}", "'max_new_tokens'", "integer"},
    {"{\"prompt_tokens\": [1], \"max_new_tokens\": 18446744073709551615}", "'max_new_tokens'", "integer"},
    {"{\"prompt_tokens\": [1], \"temperature\": -0.1}", "'temperature'", ">= 0"},
    {"{\"prompt_tokens\": [1], \"temperature\": \"hot\"}", "'temperature'", "number"},
    {"{\"prompt_tokens\": [1], \"temperature\": 1e999}", "invalid JSON", "overflow"},
    {"{\"prompt_tokens\": [1], \"top_p\": 0}", "'top_p'", "(0, 1]"},
    {"{\"prompt_tokens\": [1], \"top_p\": 1.5}", "'top_p'", "(0, 1]"},
    {"{\"prompt_tokens\": [1], \"top_p\": null}", "'top_p'", "number"},
    {"{\"prompt_tokens\": [1], \"top_k\": -1}", "'top_k'", "integer in [0, "},
    {"{\"prompt_tokens\": [1], \"top_k\": 2.5}", "'top_k'", "integer"},
    {"{\"prompt_tokens\": [1], \"seed\": -1}", "'seed'", ">= 0"},
    {"{\"prompt_tokens\": [1], \"seed\": 1.5}", "'seed'", ">= 0"},
    {"{\"prompt_tokens\": [1], \"ignore_eos\": 1}", "'ignore_eos'", "true or false"},
    {"{\"prompt_tokens\": [1], \"id\": [1]}", "'id'", "string or an integer"},
    {"{\"prompt_tokens\": [1], \"id\": \"\"}", "'id'", "empty"},
    {"{\"prompt_tokens\": [1], \"id\": \"0\"}", "'id'", "duplicate id \"0\" (first used at line 1)"},
    {"{\"prompt_tokens\": [1], \"id\": 0}", "'id'", "duplicate id"},
    {"{\"prompt_tokens\": [1], \"max_new_token\": 4}", "'max_new_token'", "did you mean 'max_new_tokens'?"},
    {"{\"prompt_tokens\": [1], \"stream\": true}", "unknown field 'stream'", "known fields: id, prompt_tokens"},
    {"{\"prompt_tokens\": [1], \"top_k\": 1, \"top_k\": 2}", "'top_k'", "twice"},
    {"{\"prompt_tokens\": [1], \"arrival_s\": -0.5}", "'arrival_s'", "must be >= 0"},
    {"{\"prompt_tokens\": [1], \"arrival_s\": \"1.0\"}", "'arrival_s'", "must be a number"},
    {"{\"prompt_tokens\": [1], \"arrival_s\": null}", "'arrival_s'", "must be a number"},
    {"{\"prompt_tokens\": [1], \"arrival_s\": 1e400}", "invalid JSON", "1e400"},  // overflow
    {"{\"prompt_tokens\": [1], \"arrival_s\": NaN}", "invalid JSON", ""},                 // JSON has no NaN
    {"{\"prompt_tokens\": [1], \"after\": \"nobody\"}", "'after'", "no earlier line has id \"nobody\""},
    {"{\"prompt_tokens\": [1], \"id\": \"me\", \"after\": \"me\"}", "'after'", "no earlier line"},
    {"{\"prompt_tokens\": [1], \"after\": 0, \"arrival_s\": 1}", "'arrival_s' and 'after'", "exclude"},
    {"{\"prompt_tokens\": [1], \"after\": [0]}", "'after'", "must be a string or an integer"},
};

TEST(Prompts, EachBadLineNamesLineAndField) {
  for (const BadLine& c : kBadLines) {
    std::string msg = parse_error(std::string("{\"prompt_tokens\": [1]}\n") + c.line + "\n");
    EXPECT_NE(msg.find("p.jsonl:2: "), std::string::npos) << c.line << " -> " << msg;
    EXPECT_NE(msg.find(c.field), std::string::npos) << c.line << " -> " << msg;
    EXPECT_NE(msg.find(c.reason), std::string::npos) << c.line << " -> " << msg;
  }
}

TEST(Prompts, ArrivalsParseAndRoundTrip) {
  const std::vector<RequestSpec> specs = parse_prompts(
      "{\"id\": \"a\", \"prompt_tokens\": [1], \"arrival_s\": 0.25}\n"
      "{\"prompt_tokens\": [2], \"arrival_s\": 0}\n"
      "{\"prompt_tokens\": [3], \"after\": \"a\", \"max_new_tokens\": 2, \"temperature\": 0.5}\n"
      "{\"prompt_tokens\": [4], \"after\": 1, \"seed\": 7, \"ignore_eos\": true}\n",
      "p.jsonl");
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_DOUBLE_EQ(*specs[0].arrival_s, 0.25);
  EXPECT_EQ(specs[0].after, -1);
  EXPECT_DOUBLE_EQ(*specs[1].arrival_s, 0.0);
  EXPECT_FALSE(specs[2].arrival_s.has_value());
  EXPECT_EQ(specs[2].after, 0);  // by its id "a"
  EXPECT_EQ(specs[3].after, 1);  // the second request's default id is its index, "1"
  const std::vector<RequestSpec> again = parse_prompts(format_prompts(specs), "again.jsonl");
  ASSERT_EQ(again.size(), specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(again[i].id, specs[i].id);
    EXPECT_EQ(again[i].prompt_tokens, specs[i].prompt_tokens);
    EXPECT_EQ(again[i].max_new_tokens, specs[i].max_new_tokens);
    EXPECT_EQ(again[i].arrival_s, specs[i].arrival_s);
    EXPECT_EQ(again[i].after, specs[i].after);
    EXPECT_EQ(again[i].temperature, specs[i].temperature);
    EXPECT_EQ(again[i].seed, specs[i].seed);
    EXPECT_EQ(again[i].ignore_eos, specs[i].ignore_eos);
  }
}

TEST(Prompts, EmptyFile) {
  EXPECT_NE(parse_error("").find("p.jsonl: no requests"), std::string::npos);
  EXPECT_NE(parse_error("\n  \n\n").find("p.jsonl: no requests"), std::string::npos);
}

TEST(Prompts, ReadsFilesAndReportsUnreadableOnes) {
  std::string path = ::testing::TempDir() + "moetron_prompts_" + std::to_string(getpid()) + ".jsonl";
  {
    std::ofstream out(path);
    out << "{\"prompt_tokens\": [1, 2]}\n{\"prompt_tokens\": [3], \"top_p\": 2}\n";
  }
  std::string msg = error_of([&] { read_prompts(path); });
  EXPECT_NE(msg.find(path + ":2: field 'top_p'"), std::string::npos) << msg;
  {
    std::ofstream out(path);
    out << "{\"prompt_tokens\": [1, 2]}\n";
  }
  EXPECT_EQ(read_prompts(path).size(), 1u);
  std::remove(path.c_str());

  msg = error_of([&] { read_prompts(path); });
  EXPECT_NE(msg.find(path + ": cannot read prompts file"), std::string::npos) << msg;
  msg = error_of([&] { read_prompts(::testing::TempDir()); });
  EXPECT_NE(msg.find("is a directory"), std::string::npos) << msg;
}

TEST(Prompts, ValidateAgainstModel) {
  auto specs = parse_prompts(
      "{\"id\": \"ok\", \"prompt_tokens\": [0, 99], \"max_new_tokens\": 8}\n"
      "{\"id\": \"fits\", \"prompt_tokens\": [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n",
      "p.jsonl");
  EXPECT_NO_THROW(validate_requests(specs, 100, 10, "p.jsonl"));

  auto validate_error = [](const std::string& line) {
    auto one = parse_prompts("{\"prompt_tokens\": [1]}\n" + line, "p.jsonl");
    return error_of([&] { validate_requests(one, 100, 10, "p.jsonl"); });
  };
  std::string msg = validate_error("{\"id\": \"big\", \"prompt_tokens\": [1, 100]}");
  EXPECT_NE(msg.find("p.jsonl:2: request 'big': field 'prompt_tokens[1]' = 100 is outside"),
            std::string::npos) << msg;
  msg = validate_error("{\"prompt_tokens\": []}");
  EXPECT_NE(msg.find("p.jsonl:2: request '1': field 'prompt_tokens' is empty"), std::string::npos)
      << msg;
  msg = validate_error("{\"prompt_tokens\": [1, 2, 3], \"max_new_tokens\": 8}");
  EXPECT_NE(msg.find("p.jsonl:2: request '1': prompt_tokens (3) + max_new_tokens (8) exceed"),
            std::string::npos) << msg;
  msg = validate_error("{\"prompt_tokens\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}");
  EXPECT_NE(msg.find("p.jsonl:2: request '1': prompt_tokens (10) leave no room"), std::string::npos)
      << msg;

  // Specs built in code (not parsed) get the same checks, including negative ids.
  RequestSpec neg;
  neg.id = "n";
  neg.prompt_tokens = {-1};
  neg.line = 9;
  msg = error_of([&] { validate_requests({neg}, 100, 10, "p.jsonl"); });
  EXPECT_NE(msg.find("p.jsonl:9: request 'n': field 'prompt_tokens[0]' = -1"), std::string::npos)
      << msg;
}

TEST(Prompts, HostileInputRefusedEarly) {
  // A NUL byte in an id is found with the prompts, naming the line.
  std::string msg = error_of([] { parse_prompts("{\"prompt_tokens\": [1]}\n{\"id\": \"a\\u0000b\", \"prompt_tokens\": [1]}\n", "p.jsonl"); });
  EXPECT_NE(msg.find("p.jsonl:2: field 'id' contains a NUL byte"), std::string::npos) << msg;
  // A line longer than the bound is refused before it is parsed.
  const std::string huge = "{\"prompt_tokens\": [" + std::string(17u << 20, ' ') + "1]}\n";
  msg = error_of([&] { parse_prompts(huge, "p.jsonl"); });
  EXPECT_NE(msg.find("p.jsonl:1: line is"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-byte limit"), std::string::npos) << msg;
  // Special files: refused by type, never read (/dev/zero) or waited on (a FIFO).
  msg = error_of([] { read_prompts("/dev/zero"); });
  EXPECT_NE(msg.find("/dev/zero: cannot read prompts file: it is a character device"), std::string::npos) << msg;
  const std::string fifo = ::testing::TempDir() + "/moetron-prompts-fifo-" + std::to_string(getpid());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  msg = error_of([&] { read_prompts(fifo); });
  std::remove(fifo.c_str());
  EXPECT_NE(msg.find("it is a FIFO"), std::string::npos) << msg;
}

}  // namespace
}  // namespace moetron
