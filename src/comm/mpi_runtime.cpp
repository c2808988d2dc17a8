#include "moetron/comm/mpi_runtime.hpp"

#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "moetron/comm/collective_watchdog.hpp"
#include "moetron/core/error.hpp"
#include "moetron/core/log.hpp"

namespace moetron {

namespace {

bool mpi_running() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

}  // namespace

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
    len = std::snprintf(text, sizeof text, "MPI error code %d", rc);
  MOETRON_FAIL(what << " failed: " << std::string(text, len));
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    int provided = 0;
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_ = true;
    MOETRON_CHECK(provided >= MPI_THREAD_FUNNELED,
                  "MPI_Init_thread: this MPI provides thread level "
                      << provided << ", below MPI_THREAD_FUNNELED");
  }
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  set_log_rank(rank_);
  start_watchdog();
}

MpiRuntime::~MpiRuntime() {
  // A destructor cannot report; a failing finalize at exit changes nothing the user can act on.
  if (mpi_running()) stop_watchdog();
  if (owns_ && mpi_running()) MPI_Finalize();
}

void abort_job(const std::string& msg) {
  static std::atomic<bool> reported{false};
  bool running = mpi_running();
  int rank = 0;
  if (running) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (!reported.exchange(true)) {
    std::fprintf(stderr, "moetron: rank %d: error: %s\n", rank, msg.c_str());
    std::fflush(stderr);
  }
  if (running) MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

}  // namespace moetron
