// Twenty-ninth session's experiment: does the collective watchdog's way of waiting slow a large
// MPI_Iallreduce? Times one in-place float all-reduce (256 KiB to 16 MiB) under three waits:
//   mode 0: MPI_Wait;
//   mode 1: the watchdog's loop (busy 20 us, yield until SPIN_US, then sleep 50 us doubling to 1 ms);
//   mode 2: poll and yield only.
// Build and run: mpicxx -O2 -std=c++17 wait_modes.cpp -o wait_modes &&
//   mpirun -np 2 ./wait_modes SPIN_US      (SPIN_US: 1000 before the fix, 50000 after)
// Add `--mca btl_vader_single_copy_mechanism none` to see shared memory without CMA.
#include <mpi.h>
#include <chrono>
#include <thread>
#include <vector>
#include <cstdio>
#include <algorithm>
using Clock = std::chrono::steady_clock;
void waitreq(MPI_Request& r, int mode, long spin_us) {
  if (mode == 0) { MPI_Wait(&r, MPI_STATUS_IGNORE); return; }
  auto start = Clock::now(); auto pause = std::chrono::microseconds(50);
  int flag = 0;
  while (true) {
    MPI_Test(&r, &flag, MPI_STATUS_IGNORE); if (flag) return;
    auto now = Clock::now();
    if (now - start < std::chrono::microseconds(20)) continue;
    if (mode == 2 || now - start < std::chrono::microseconds(spin_us)) { std::this_thread::yield(); continue; }
    std::this_thread::sleep_for(pause); pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(1));
  }
}
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank; MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  long spin_us = argc > 1 ? atol(argv[1]) : 1000;
  for (long n : {1L<<16, 1L<<18, 1L<<20, 1L<<22}) {
    std::vector<float> v(n, 1.0f);
    for (int mode : {0, 1, 2}) {
      double best = 1e9, sum = 0;
      for (int rep = 0; rep < 5; ++rep) {
        MPI_Barrier(MPI_COMM_WORLD);
        auto t0 = Clock::now();
        MPI_Request r; MPI_Iallreduce(MPI_IN_PLACE, v.data(), n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
        waitreq(r, mode, spin_us);
        double s = std::chrono::duration<double>(Clock::now() - t0).count();
        best = std::min(best, s); sum += s;
      }
      if (rank == 0) printf("%8ld floats (%5.1f MiB) mode %d: best %.3f ms mean %.3f ms\n", n, n*4/1048576.0, mode, best*1e3, sum/5*1e3);
    }
  }
  MPI_Finalize();
}
