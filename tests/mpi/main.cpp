// GoogleTest under mpirun: every rank runs every test; rank 0 prints the usual report, the
// others print only their failures (prefixed with the rank), and every rank exits non-zero
// when any rank failed, so mpirun and ctest see the failure whichever rank had it.
//
// `--abort-from-rank=R` instead checks abort_job (expect_abort.sh runs it): rank R fails while
// every other rank waits in a barrier that can never complete; the job must still end.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moetron/comm/mpi_runtime.hpp"

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "rank %d: %s:%d: failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

// Never returns: rank `failing` aborts the job, the others block until it is killed.
[[noreturn]] void abort_from_rank(int rank, int failing) {
  if (rank == failing) moetron::abort_job("deliberate failure on one rank");
  MPI_Barrier(MPI_COMM_WORLD);
  std::fprintf(stderr, "rank %d: the barrier completed without rank %d\n", rank, failing);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  moetron::MpiRuntime mpi(&argc, &argv);
  const char* kAbortFlag = "--abort-from-rank=";
  if (argc > 1 && std::strncmp(argv[1], kAbortFlag, std::strlen(kAbortFlag)) == 0)
    abort_from_rank(mpi.world_rank(), std::atoi(argv[1] + std::strlen(kAbortFlag)));
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.world_rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(mpi.world_rank()));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = 0;
  moetron::check_mpi(MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
                     "MPI_Allreduce");
  return any_failed;
}
