#include "moetron/engine/device_binding.hpp"

#include <unistd.h>

#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "moetron/backend/cpu_ops.hpp"
#include "moetron/comm/mpi_communicator.hpp"
#include "moetron/comm/mpi_runtime.hpp"
#include "moetron/core/error.hpp"

namespace moetron {
namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(s);
  while (std::getline(in, part, sep)) parts.push_back(part);
  if (!s.empty() && s.back() == sep) parts.emplace_back();
  if (s.empty()) parts.emplace_back();
  return parts;
}

std::string join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : std::string(1, sep)) + s;
  return out;
}

// "0-3" for consecutive ranks, else "0,2,5".
std::string rank_list(const std::vector<int>& ranks) {
  bool consecutive = ranks.size() > 2;
  for (size_t i = 1; i < ranks.size(); ++i) consecutive = consecutive && ranks[i] == ranks[i - 1] + 1;
  if (consecutive) return std::to_string(ranks.front()) + "-" + std::to_string(ranks.back());
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ",") + std::to_string(r);
  return out;
}

}  // namespace

std::vector<DeviceBinding> bind_devices(const std::vector<RankDevices>& ranks) {
  const int n = static_cast<int>(ranks.size());
  std::vector<DeviceBinding> out(ranks.size());
  int with_gpu = 0;
  for (const RankDevices& r : ranks) with_gpu += r.uuids.empty() ? 0 : 1;
  if (with_gpu > 0 && with_gpu < n)
    for (int r = 0; r < n; ++r)
      MOETRON_CHECK(!ranks[r].uuids.empty(),
                    "rank " << r << " on host " << ranks[r].host << " sees no GPU while " << with_gpu
                            << " of the " << n << " ranks do (check CUDA_VISIBLE_DEVICES and the "
                            << "launcher's GPU options): every rank needs one");

  std::map<std::string, int> on_node;  // host -> ranks
  std::map<std::string, std::set<int>> node_cpus;  // host -> the union of its ranks' cores
  std::map<std::string, bool> cpus_unknown;        // host -> some rank did not say
  for (const RankDevices& r : ranks) {
    ++on_node[r.host];
    node_cpus[r.host].insert(r.cpus.begin(), r.cpus.end());
    if (r.cpus.empty()) cpus_unknown[r.host] = true;
  }
  std::map<std::string, int> users;  // uuid -> ranks bound to it
  for (int r = 0; r < n; ++r) {
    DeviceBinding& b = out[r];
    b.node_local_rank = ranks[r].node_local_rank;
    b.ranks_on_node = on_node[ranks[r].host];
    b.cores_on_node = cpus_unknown[ranks[r].host] ? 0 : static_cast<int>(node_cpus[ranks[r].host].size());
    const std::vector<std::string>& seen = ranks[r].uuids;
    if (seen.empty()) continue;
    // Position among the node's ranks (by node-local rank) that see the same devices.
    int k = 0;
    for (int q = 0; q < n; ++q)
      if (ranks[q].host == ranks[r].host && ranks[q].uuids == seen &&
          ranks[q].node_local_rank < ranks[r].node_local_rank)
        ++k;
    b.device = seen.size() == 1 ? 0 : k % static_cast<int>(seen.size());
    b.uuid = seen[static_cast<size_t>(b.device)];
    ++users[b.uuid];
  }
  bool world_shares = false;
  std::map<std::string, bool> node_shares;  // host -> some GPU there serves several ranks
  for (int r = 0; r < n; ++r) {
    if (out[r].device < 0) continue;
    out[r].ranks_sharing_device = users[out[r].uuid];
    if (out[r].ranks_sharing_device > 1) world_shares = node_shares[ranks[r].host] = true;
  }
  for (int r = 0; r < n; ++r) {
    out[r].node_shares_gpu = node_shares[ranks[r].host];
    out[r].world_shares_gpu = world_shares;
    if (with_gpu > 0) out[r].transport = world_shares ? "mpi" : "nccl";
  }
  return out;
}

std::vector<std::string> describe_bindings(const std::vector<RankDevices>& ranks,
                                           const std::vector<DeviceBinding>& bindings) {
  MOETRON_ASSERT(ranks.size() == bindings.size());
  std::vector<std::string> hosts;                       // in order of first rank
  std::map<std::string, std::vector<int>> host_ranks;   // host -> world ranks
  for (int r = 0; r < static_cast<int>(ranks.size()); ++r) {
    if (host_ranks[ranks[r].host].empty()) hosts.push_back(ranks[r].host);
    host_ranks[ranks[r].host].push_back(r);
  }
  std::vector<std::string> lines;
  for (const std::string& host : hosts) {
    const std::vector<int>& members = host_ranks[host];
    std::vector<std::string> uuids;                   // bound GPUs, in order of first user
    std::map<std::string, std::vector<int>> gpu_users;
    for (int r : members) {
      const std::string& u = bindings[r].uuid;
      if (u.empty()) continue;
      if (gpu_users[u].empty()) uuids.push_back(u);
      gpu_users[u].push_back(r);
    }
    std::ostringstream os;
    os << "node " << host << ": rank" << (members.size() > 1 ? "s " : " ") << rank_list(members) << ", ";
    const DeviceBinding& first = bindings[members.front()];
    if (uuids.empty()) {
      os << "no GPU: transport mpi";
      lines.push_back(os.str());
      continue;
    }
    os << uuids.size() << " GPU" << (uuids.size() > 1 ? "s" : "") << " (";
    for (size_t i = 0; i < uuids.size(); ++i) {
      const std::vector<int>& u = gpu_users[uuids[i]];
      os << (i ? "; " : "") << uuids[i] << ": rank" << (u.size() > 1 ? "s " : " ") << rank_list(u);
    }
    os << "), ";
    if (first.node_shares_gpu)
      os << "ranks share GPUs";
    else
      os << "one GPU per rank";
    if (first.transport == "nccl")
      os << ": device transport nccl";
    else
      os << ": device transport mpi through host memory ("
         << (first.node_shares_gpu ? "NCCL refuses two ranks on one GPU" : "ranks share GPUs on another node")
         << ")";
    lines.push_back(os.str());
  }
  return lines;
}

std::string host_name() {
  char buf[256] = {0};
  MOETRON_CHECK(gethostname(buf, sizeof buf - 1) == 0, "gethostname failed");
  return buf;
}

std::vector<RankDevices> gather_rank_devices(MPI_Comm world, RankDevices mine) {
  mine.host = host_name();
  MPI_Comm local;
  check_mpi(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type");
  check_mpi(MPI_Comm_rank(local, &mine.node_local_rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_free(&local), "MPI_Comm_free");
  if (mine.cpus.empty()) mine.cpus = cpu_affinity_cores();
  // One string per rank: "host\nlocal_rank\nuuid,uuid,...\ncpu,cpu,..." (host names and UUIDs
  // hold no newline or comma).
  std::vector<std::string> cpus;
  for (int c : mine.cpus) cpus.push_back(std::to_string(c));
  const std::string packed = mine.host + "\n" + std::to_string(mine.node_local_rank) + "\n" +
                             join(mine.uuids, ',') + "\n" + join(cpus, ',');
  std::vector<RankDevices> all;
  for (const std::string& s : allgather_strings(packed, world)) {
    const std::vector<std::string> f = split(s, '\n');
    MOETRON_ASSERT(f.size() == 4);
    RankDevices r;
    r.host = f[0];
    r.node_local_rank = std::stoi(f[1]);
    if (!f[2].empty()) r.uuids = split(f[2], ',');
    if (!f[3].empty())
      for (const std::string& c : split(f[3], ',')) r.cpus.push_back(std::stoi(c));
    all.push_back(std::move(r));
  }
  return all;
}

bool test_hook_uuids(int world_rank, std::vector<std::string>* uuids) {
  const char* hook = std::getenv("MOETRON_TEST_GPU_UUIDS");
  if (hook == nullptr) return false;
  const std::vector<std::string> per_rank = split(hook, ';');
  const std::string& entry = per_rank[static_cast<size_t>(world_rank) % per_rank.size()];
  uuids->clear();
  if (!entry.empty()) *uuids = split(entry, ',');
  for (const std::string& u : *uuids)
    MOETRON_CHECK(!u.empty(), "MOETRON_TEST_GPU_UUIDS: an empty UUID in entry '" << entry << "'");
  return true;
}

}  // namespace moetron
