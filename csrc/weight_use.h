#pragma once
// How one op call uses a weight matrix, for a backend deciding how to prepare it
// (prepare_weight, prepare_recurrent_weight): the call multiplies it with `rows` rows in
// all, over `steps` time steps.
#include <cstdint>

namespace fused_rnn {

struct WeightUse {
  int64_t steps, rows;
};

}  // namespace fused_rnn
