// MPI for the life of a process: init (funneled: only the main thread calls MPI), finalize, the
// world's rank and size, the return-code check, and the job-wide abort that main's top-level
// catch calls so that one rank's error ends every rank within seconds.
#pragma once
#include <string>

namespace moetron {

// Throws Error "<what> failed: <MPI's own description>" when rc is not MPI_SUCCESS.
void check_mpi(int rc, const char* what);

class MpiRuntime {
 public:
  // Initialises MPI unless something else already has (then leaves finalize to that owner).
  // Sets MPI_ERRORS_RETURN on MPI_COMM_WORLD so failures become Errors, and the log rank;
  // starts the collective watchdog (collective_watchdog.hpp), so every rank must construct it.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }

 private:
  bool owns_ = false;
  int rank_ = 0;
  int size_ = 1;
};

// Prints "moetron: rank R: error: msg" to stderr (once per process, however many threads or
// nested handlers call it) and ends the whole job with MPI_Abort(MPI_COMM_WORLD, 1); without
// MPI running it exits with status 1.
[[noreturn]] void abort_job(const std::string& msg);

}  // namespace moetron
