// CudaOps recording: the work enqueued on the backend's stream between begin_recording() and
// end_recording() is captured into a CUDA graph and instantiated once; replay() launches it.
#include <cuda_runtime.h>

#include <vector>

#include "moetron/backend/cuda_ops.hpp"
#include "moetron/core/error.hpp"

namespace moetron {

struct CudaOps::Recordings {
  std::vector<cudaGraphExec_t> graphs;
  std::vector<int64_t> nodes;  // each graph's node count, taken before the graph is destroyed
  ~Recordings() {
    for (cudaGraphExec_t g : graphs) cudaGraphExecDestroy(g);
  }
};

namespace {
void check(cudaError_t rc, const char* what) {
  MOETRON_CHECK(rc == cudaSuccess, what << " failed: " << cudaGetErrorString(rc));
}
}  // namespace

void CudaOps::begin_recording() {
  if (!recordings_) recordings_ = std::make_shared<Recordings>();
  // Thread-local mode: only this thread's stream-ordered work is captured, and an illegal call
  // (a synchronisation, a host copy) fails loudly instead of silently breaking the graph.
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
}

int CudaOps::end_recording() {
  cudaGraph_t graph = nullptr;
  check(cudaStreamEndCapture(stream_, &graph), "cudaStreamEndCapture");
  size_t nodes = 0;
  const cudaError_t counted = cudaGraphGetNodes(graph, nullptr, &nodes);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t rc = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  check(counted, "cudaGraphGetNodes");
  check(rc, "cudaGraphInstantiate");
  recordings_->graphs.push_back(exec);
  recordings_->nodes.push_back(static_cast<int64_t>(nodes));
  return static_cast<int>(recordings_->graphs.size()) - 1;
}

void CudaOps::replay(int recording) {
  MOETRON_ASSERT(recordings_ && recording >= 0 &&
                 recording < static_cast<int>(recordings_->graphs.size()));
  check(cudaGraphLaunch(recordings_->graphs[static_cast<size_t>(recording)], stream_), "cudaGraphLaunch");
}

int64_t CudaOps::recording_nodes(int recording) const {
  MOETRON_ASSERT(recordings_ && recording >= 0 && recording < static_cast<int>(recordings_->nodes.size()));
  return recordings_->nodes[static_cast<size_t>(recording)];
}

}  // namespace moetron
