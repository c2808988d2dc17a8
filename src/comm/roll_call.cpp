#include "moetron/comm/roll_call.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

namespace moetron {
namespace {

// Copies at most N-1 characters and always terminates (the array travels as bytes).
template <size_t N>
void copy_name(char (&to)[N], const std::string& from) {
  std::strncpy(to, from.c_str(), N - 1);
  to[N - 1] = '\0';
}

bool same_group(const WaitSite& a, const WaitSite& b) {
  if (a.group_id != b.group_id) return false;
  // Without an agreed id only the names can tell: the same operation on a group of that name.
  return a.group_id != WaitSite::kUntrackedGroup ||
         (std::strcmp(a.group, b.group) == 0 && std::strcmp(a.op, b.op) == 0);
}

bool arrived(const WaitSite& mine, int me, const WaitSite& theirs) {
  if (!same_group(mine, theirs)) return false;
  if (mine.peer >= 0) return theirs.peer == me && std::strcmp(theirs.op, mine.op) != 0;
  return theirs.peer < 0 && theirs.seq >= mine.seq;
}

// "rank 2" or "ranks 0,1,3".
std::string rank_list(const std::vector<int>& ranks) {
  std::ostringstream os;
  os << (ranks.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < ranks.size(); ++i) os << (i ? "," : "") << ranks[i];
  return os.str();
}

}  // namespace

WaitSite make_wait_site(const char* op, const std::string& group, int64_t group_id, int64_t seq, int peer) {
  WaitSite s;
  s.group_id = group_id;
  s.seq = seq;
  s.peer = peer;
  copy_name(s.op, op);
  copy_name(s.group, group);
  return s;
}

std::string describe(const WaitSite& site) {
  std::ostringstream os;
  os << site.op;
  if (site.peer >= 0)
    os << (std::strcmp(site.op, "send") == 0 ? " to rank " : " from rank ") << site.peer;
  else if (site.group_id != WaitSite::kUntrackedGroup)
    os << " #" << site.seq;
  os << " (" << site.group << ")";
  return os.str();
}

std::vector<int> expected_ranks(const WaitSite& site, int me, const std::vector<int>& members) {
  if (site.peer >= 0) return {site.peer};
  std::vector<int> others;
  for (int rank : members)
    if (rank != me) others.push_back(rank);
  return others;
}

RollCallVerdict judge_roll_call(const WaitSite& mine, int me, const std::vector<int>& members,
                                const std::map<int, WaitSite>& answers, double waited_s) {
  RollCallVerdict v;
  std::ostringstream why;
  for (int rank : expected_ranks(mine, me, members)) {
    const auto answer = answers.find(rank);
    if (answer != answers.end() && arrived(mine, me, answer->second)) {
      v.waiting.push_back(rank);
      continue;
    }
    why << (v.missing.empty() ? "" : ", ") << "rank " << rank;
    if (answer == answers.end())
      why << " did not answer the roll call (stopped, wedged or busy)";
    else
      why << " is waiting in " << describe(answer->second);
    v.missing.push_back(rank);
  }
  v.waiting.push_back(me);
  std::sort(v.waiting.begin(), v.waiting.end());
  std::ostringstream os;
  if (v.missing.empty()) {
    os << describe(mine) << " did not complete within " << waited_s << " s (--collective-timeout) although "
       << rank_list(v.waiting) << " were all waiting in it";
  } else {
    os << rank_list(v.missing) << " did not arrive at " << describe(mine) << " within " << waited_s
       << " s (--collective-timeout): " << why.str() << "; " << rank_list(v.waiting)
       << (v.waiting.size() == 1 ? " was" : " were") << " waiting";
  }
  os << "; ending the job";
  v.message = os.str();
  return v;
}

}  // namespace moetron
