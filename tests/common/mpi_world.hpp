// MPI_COMM_WORLD's rank and size for the MPI tests, with their return codes checked.
#pragma once
#include <mpi.h>

#include "moetron/comm/mpi_runtime.hpp"

namespace moetron::test_mpi {

inline int world_rank() {
  int r = 0;
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &r), "MPI_Comm_rank");
  return r;
}

inline int world_size() {
  int n = 0;
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &n), "MPI_Comm_size");
  return n;
}

}  // namespace moetron::test_mpi
