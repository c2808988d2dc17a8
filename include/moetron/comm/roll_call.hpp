// The roll call of a collective that waited too long (collective_watchdog.hpp runs it): what each
// rank says it is waiting in, and the verdict on which ranks did not arrive. Pure, no MPI, so the
// judgement is tested on its own (tests/unit/test_roll_call.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moetron {

// What a rank is waiting in: an operation on a group. Plain bytes, so it travels as an answer
// to a roll call unchanged.
struct WaitSite {
  static constexpr int64_t kUntrackedGroup = 0;  // a communicator without an agreed id
  int64_t group_id = kUntrackedGroup;  // the same on every member (agreed when the group was made)
  int64_t seq = 0;                     // collectives on the group so far, this one included
  int32_t peer = -1;                   // world rank of the other side of a send/recv; -1: collective
  char op[20] = {};                    // "allreduce", "send", ...
  char group[28] = {};                 // "tp group", "world", ...
};

WaitSite make_wait_site(const char* op, const std::string& group, int64_t group_id, int64_t seq, int peer);

// "allreduce #12 (tp group)", "recv from rank 2 (pipeline group)".
std::string describe(const WaitSite& site);

struct RollCallVerdict {
  std::vector<int> missing;  // world ranks that did not arrive (no answer, or waiting elsewhere)
  std::vector<int> waiting;  // world ranks waiting in the same operation, this rank included
  std::string message;       // the one line the job ends with
};

// The world ranks other than `me` that must arrive for `site` to complete: the peer of a
// send/recv, else every member of the group.
std::vector<int> expected_ranks(const WaitSite& site, int me, const std::vector<int>& members);

// `mine` waited `waited_s` seconds at world rank `me` on the group of world ranks `members`;
// `answers` is what each rank that answered the roll call was waiting in. A member arrived when it waits in the same operation or has passed it
// (a later collective on the same group; a broadcast's root can move on first); the peer of a
// send/recv arrived when it waits in the matching recv/send with this rank.
RollCallVerdict judge_roll_call(const WaitSite& mine, int me, const std::vector<int>& members,
                                const std::map<int, WaitSite>& answers, double waited_s);

}  // namespace moetron
