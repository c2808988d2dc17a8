// Why a request stopped. An enum through the engine, gathering and results; it becomes text
// ("length", "eos") only when the results file is written (io/results: finish_reason_name).
#pragma once
#include <cstdint>

namespace moetron {

enum class FinishReason : int8_t { Length, Eos };

}  // namespace moetron
