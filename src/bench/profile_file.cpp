#include "moetron/bench/profile_file.hpp"

#include <utility>

#include "moetron/backend/expert_paths.hpp"
#include "moetron/core/atomic_file.hpp"
#include "moetron/core/error.hpp"
#include "moetron/io/hdf5.hpp"

namespace moetron {

namespace {

constexpr const char* kFormat = "moetron hardware profile";
// 2: the expert call on each side of the CUDA kernel switch (moe_experts_gemv). 3: short calls
// timed as recorded nodes (profile.hpp). 1 and 2 are still read.
constexpr int64_t kFormatVersion = kProfileFormatVersion;

// The origin's fields as root attributes: strings, then integers.
std::vector<std::pair<const char*, std::string ProfileOrigin::*>> origin_strings() {
  return {{"device", &ProfileOrigin::device},           {"driver", &ProfileOrigin::driver},
          {"backend", &ProfileOrigin::backend},         {"host", &ProfileOrigin::host},
          {"moetron_version", &ProfileOrigin::moetron_version}, {"git_commit", &ProfileOrigin::git_commit},
          {"created", &ProfileOrigin::created},         {"command_line", &ProfileOrigin::command_line}};
}
std::vector<std::pair<const char*, int ProfileOrigin::*>> origin_ints() {
  return {{"world_size", &ProfileOrigin::world_size}, {"ranks_per_node", &ProfileOrigin::ranks_per_node},
          {"nodes", &ProfileOrigin::nodes},           {"warmup", &ProfileOrigin::warmup},
          {"reps", &ProfileOrigin::reps}};
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : ",") + p;
  return out;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (!text.empty()) {
    const size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void write_table(h5::File& f, const std::string& group, const SeriesTable& t) {
  f.create_group(group);
  f.set_attribute(group, "key_names", join(t.key_names));
  f.set_attribute(group, "size_name", t.size_name);
  std::vector<int64_t> keys, offsets{0}, sizes;
  std::vector<double> median, p10, p90;
  for (const Series& s : t.series) {
    keys.insert(keys.end(), s.key.begin(), s.key.end());
    sizes.insert(sizes.end(), s.sizes.begin(), s.sizes.end());
    for (const Measurement& m : s.times) {
      median.push_back(m.median_s);
      p10.push_back(m.p10_s);
      p90.push_back(m.p90_s);
    }
    offsets.push_back(static_cast<int64_t>(sizes.size()));
  }
  f.write(group + "/keys", keys, {static_cast<int64_t>(t.series.size()), static_cast<int64_t>(t.key_names.size())});
  f.write(group + "/offsets", offsets);
  f.write(group + "/sizes", sizes);
  f.write(group + "/median_s", median);
  f.write(group + "/p10_s", p10);
  f.write(group + "/p90_s", p90);
}

SeriesTable read_table(const h5::File& f, const std::string& group) {
  SeriesTable t;
  t.key_names = split(f.string_attribute(group, "key_names"));
  t.size_name = f.string_attribute(group, "size_name");
  const auto keys = f.read<int64_t>(group + "/keys");
  const auto offsets = f.read<int64_t>(group + "/offsets");
  const auto sizes = f.read<int64_t>(group + "/sizes");
  const auto median = f.read<double>(group + "/median_s");
  const auto p10 = f.read<double>(group + "/p10_s");
  const auto p90 = f.read<double>(group + "/p90_s");
  const size_t width = t.key_names.size(), count = offsets.empty() ? 0 : offsets.size() - 1;
  const bool consistent = !offsets.empty() && offsets.front() == 0 && keys.size() == count * width &&
                          static_cast<size_t>(offsets.back()) == sizes.size() && median.size() == sizes.size() &&
                          p10.size() == sizes.size() && p90.size() == sizes.size();
  MOETRON_CHECK(consistent, f.path() << ": " << group << ": keys, offsets, sizes and times disagree in length");
  for (size_t s = 0; s < count; ++s) {
    MOETRON_CHECK(offsets[s] <= offsets[s + 1], f.path() << ": " << group << "/offsets is not ascending");
    Series series{{keys.begin() + static_cast<int64_t>(s * width), keys.begin() + static_cast<int64_t>((s + 1) * width)}, {}, {}};
    for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
      const auto at = static_cast<size_t>(i);
      MOETRON_CHECK(series.sizes.empty() || sizes[at] > series.sizes.back(),
                    f.path() << ": " << group << "/sizes do not ascend within series " << s);
      MOETRON_CHECK(median[at] > 0, f.path() << ": " << group << "/median_s has a time that is not positive");
      series.sizes.push_back(sizes[at]);
      series.times.push_back({median[at], p10[at], p90[at]});
    }
    t.series.push_back(std::move(series));
  }
  return t;
}

// Version 1 timed every expert point as one call of tokens_per_expert * experts tokens with one
// slot each, all in moe_experts: the points of calls of at most kExpertGemvMaxTokens tokens ran
// on the GEMV path, so they move to moe_experts_gemv (version 2's tables).
void split_version_1_experts(HardwareProfile& p) {
  auto it = p.tables.find(tables::kMoeExperts.name);
  if (it == p.tables.end()) return;
  SeriesTable tiles{it->second.key_names, it->second.size_name, {}};
  SeriesTable& gemv = p.table(tables::kMoeExpertsGemv);
  for (const Series& s : it->second.series)
    for (size_t i = 0; i < s.sizes.size(); ++i) {
      const bool on_gemv = expert_call_is_gemv(s.sizes[i] * s.key.back());
      (on_gemv ? gemv : tiles).add(s.key, s.sizes[i], s.times[i]);
    }
  it->second = std::move(tiles);
}

// A path inside `root` ("/" or "/profile").
std::string inside(const std::string& root, const std::string& name) {
  return root == "/" ? "/" + name : root + "/" + name;
}

}  // namespace

void write_profile(h5::File& f, const std::string& root, const HardwareProfile& p) {
  if (root != "/") f.create_group(root);
  f.set_attribute(root, "format", std::string(kFormat));
  f.set_attribute(root, "format_version", static_cast<int64_t>(p.format_version));  // its timing's
  for (const auto& [name, member] : origin_strings()) f.set_attribute(root, name, p.origin.*member);
  for (const auto& [name, member] : origin_ints()) f.set_attribute(root, name, static_cast<int64_t>(p.origin.*member));
  f.set_attribute(root, "memory_bytes", p.origin.memory_bytes);
  // Only where there are kernel choices (CUDA): an absent attribute reads as none, as in
  // profiles made before it was recorded.
  if (!p.origin.kernels.empty()) f.set_attribute(root, "kernels", p.origin.kernels);
  f.create_group(inside(root, "model"));
  std::vector<std::string> names;
  std::vector<int64_t> values;
  for (const auto& [name, value] : p.model_shapes) names.push_back(name), values.push_back(value);
  f.write_strings(inside(root, "model/names"), names);
  f.write(inside(root, "model/values"), values);
  f.create_group(inside(root, "tables"));
  std::vector<std::string> table_names;
  for (const auto& [name, table] : p.tables) {
    if (table.series.empty()) continue;
    table_names.push_back(name);
    write_table(f, inside(root, "tables/" + name), table);
  }
  f.write_strings(inside(root, "tables/names"), table_names);
}

void save_profile(const std::string& path, const HardwareProfile& p) {
  write_atomically(path, [&](const std::string& tmp) {
    h5::File f = h5::File::create(tmp);
    write_profile(f, "/", p);
    f.close();
  });
}

HardwareProfile read_profile(const h5::File& f, const std::string& root) {
  const std::string& path = f.path();
  const int64_t version = f.int64_attribute(root, "format_version");
  MOETRON_CHECK(version >= 1 && version <= kFormatVersion,
                path << ": profile format_version " << version << ", this moetron reads 1 to " << kFormatVersion
                     << ": measure it again with moetron bench");
  HardwareProfile p;
  // Version 1's expert table is split below, which makes it a version 2 profile (same timing).
  p.format_version = static_cast<int>(version == 1 ? 2 : version);
  for (const auto& [name, member] : origin_strings()) p.origin.*member = f.string_attribute(root, name);
  for (const auto& [name, member] : origin_ints()) p.origin.*member = static_cast<int>(f.int64_attribute(root, name));
  p.origin.memory_bytes = f.int64_attribute(root, "memory_bytes");
  // Absent from profiles made before it was recorded: left empty, not checked.
  if (f.has_attribute(root, "kernels")) p.origin.kernels = f.string_attribute(root, "kernels");
  const auto names = f.read_strings(inside(root, "model/names"));
  const auto values = f.read<int64_t>(inside(root, "model/values"));
  MOETRON_CHECK(names.size() == values.size(),
                path << ": " << inside(root, "model/names") << " and " << inside(root, "model/values")
                     << " differ in length");
  for (size_t i = 0; i < names.size(); ++i) p.model_shapes[names[i]] = values[i];
  for (const std::string& name : f.read_strings(inside(root, "tables/names")))
    p.tables[name] = read_table(f, inside(root, "tables/" + name));
  if (version == 1) split_version_1_experts(p);
  return p;
}

HardwareProfile load_profile(const std::string& path) {
  h5::File f = h5::File::open_read(path);
  // A profile file, or a results file that embeds the profile its run measured (/profile).
  auto format_at = [&](const std::string& root) {
    return f.exists(root) && f.has_attribute(root, "format") ? f.string_attribute(root, "format") : std::string();
  };
  const std::string format = format_at("/");
  if (format == kFormat) return read_profile(f, "/");
  if (format_at("/profile") == kFormat) return read_profile(f, "/profile");
  MOETRON_FAIL(path << ": not a moetron hardware profile (its root attribute 'format' is '" << format
                    << "', and it holds no /profile; moetron bench writes them, and moetron run --plan auto "
                       "keeps the one it measures in its results)");
}

}  // namespace moetron
