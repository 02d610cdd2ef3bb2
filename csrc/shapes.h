#pragma once
// Shape legend used in every comment and check of csrc/.
//
//   T      time steps of the (packed) sequence: batch_sizes has T entries
//   N      batch size: rows of h0 / c0; batch_sizes[t] <= N, non-increasing in t
//   R      rows of the packed input: R = sum(batch_sizes) (R = T*N when unpacked)
//   I      input features
//   H      hidden features of the cell
//   P      features of the recurrent state h: P = proj_size for a projected LSTM, else H
//   G      gates per cell: LSTM 4 (i,f,g,o), GRU 3 (r,z,n), RNN 1
//   W      workspace columns in units of H: LSTM 5, GRU 4, RNN 1 (see cell_math.h)
//
// Every sequence op runs ONE layer in ONE direction over a packed sequence:
//   input        (R, I)   rows of time step t are input[off_t : off_t + batch_sizes[t]],
//                         off_t = batch_sizes[0] + ... + batch_sizes[t-1] (PackedSequence.data)
//   batch_sizes  (T,)     int64 on the CPU (PackedSequence.batch_sizes)
//   h0           (N, P)   initial state; c0 (N, H) for LSTM
//   w_ih         (G*H, I), w_hh (G*H, P), b_ih / b_hh (G*H,) optional, w_hr (P, H) optional
//   output       (R, P)   h of every step, packed like input
//   h_n          (N, P)   last state of every sequence; c_n (N, H)
//   workspace    (R, W*H) what backward needs (activated gates and cell-specific extras);
//                (0, W*H) from a forward called with keep_workspace=False
// An unpacked (T, N, I) input is the special case batch_sizes = [N] * T.
