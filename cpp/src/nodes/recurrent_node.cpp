// The recurrent node: SimpleRNN, LSTM and GRU (reset_after) forward and backward
// through time. See nodes.h for what is kept between the passes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include "ember/gemm.h"
#include "ember/nodes.h"

namespace ember {

namespace {

// The activations a recurrent cell may use, and their derivatives from their output.
inline float act1(Act a, float x) {
  switch (a) {
    case Act::Tanh: return std::tanh(x);
    case Act::Sigmoid: return 1.f / (1.f + std::exp(-x));
    case Act::Relu: return x > 0.f ? x : 0.f;
    case Act::HardSigmoid: return std::min(std::max(x + 3.f, 0.f), 6.f) / 6.f;
    default: return x;  // Linear
  }
}

inline float dact1(Act a, float y) {
  switch (a) {
    case Act::Tanh: return 1.f - y * y;
    case Act::Sigmoid: return y * (1.f - y);
    case Act::Relu: return y > 0.f ? 1.f : 0.f;
    case Act::HardSigmoid: return y > 0.f && y < 1.f ? 1.f / 6.f : 0.f;
    default: return 1.f;
  }
}

constexpr int64_t kParallelMin = 1 << 14;

// dst[j] (+)= the sum over rows of src[r * ld + j], rows in order.
void column_sums(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst,
                 bool accumulate) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t j = 0; j < cols; ++j) {
    float s = 0.f;
    for (int64_t r = 0; r < rows; ++r) s += src[r * ld + j];
    dst[j] = accumulate ? dst[j] + s : s;
  }
}

}  // namespace

const char* RnnNode::kind() const {
  switch (s_.cell) {
    case RnnCell::Simple: return "SimpleRNN";
    case RnnCell::GRU: return "GRU";
    default: return "LSTM";
  }
}

// Per sample: h before and after every step, c likewise (LSTM), the gates, and GRU's
// recurrent candidate term.
int64_t RnnNode::saved_per_sample() const {
  const int64_t T = s_.steps, U = s_.units, GU = s_.gates() * U;
  return (T + 1) * U * (s_.cell == RnnCell::LSTM ? 2 : 1) + T * GU +
         (s_.cell == RnnCell::GRU ? T * U : 0);
}

void RnnNode::plan(int64_t n) {
  const int64_t T = s_.steps, U = s_.units, GU = s_.gates() * U;
  xw_.resize(n * T * GU);  // x W in forward, the gates' gradients in backward
  rec_.resize(n * GU);
  dh_.resize(n * U);
  dc_.resize(n * U);
  drec_.resize(n * GU);
  dbias_.resize(GU);
}

bool RnnNode::plan_inference(int64_t n) {
  const int64_t T = s_.steps, U = s_.units, GU = s_.gates() * U;
  xw_.resize(n * T * GU);
  rec_.resize(n * GU);
  hbuf_.resize(2 * n * U);
  cbuf_.resize(2 * n * U);
  gbuf_.resize(n * GU);
  rhbuf_.resize(n * U);
  return true;
}

void RnnNode::forward(const StepCtx& ctx, const float* const* x, float* y, int64_t n) {
  const int64_t T = s_.steps, F = s_.features, U = s_.units, G = s_.gates(), GU = G * U;
  const bool lstm = s_.cell == RnnCell::LSTM, gru = s_.cell == RnnCell::GRU;
  const float* W = vars[0].var->data();
  const float* R = vars[1].var->data();
  const float* bias = vars.size() > 2 ? vars[2].var->data() : nullptr;
  const float* rbias = gru && bias ? bias + GU : nullptr;
  const float* ids = inputs.size() > 1 ? x[1] : nullptr;
  const bool keep = ctx.training && saved != nullptr;

  Epilogue ep;
  ep.bias = bias;
  sgemm(Trans::N, Trans::N, n * T, GU, F, 1.f, x[0], F, W, GU, 0.f, xw_.data(), GU, &ep);

  // Where step s's states and gates live: the saved rows (stride S per sample) when
  // training, else two alternating (n, U) buffers.
  const int64_t S = saved_per_sample();
  const int64_t HU = (T + 1) * U, off_c = HU, off_g = HU * (lstm ? 2 : 1),
                off_rh = off_g + T * GU;
  auto h_at = [&](int64_t slot) -> float* {
    return keep ? saved + slot * U : hbuf_.data() + (slot % 2) * n * U;
  };
  auto c_at = [&](int64_t slot) -> float* {
    return keep ? saved + off_c + slot * U : cbuf_.data() + (slot % 2) * n * U;
  };
  const int64_t ldh = keep ? S : U, ldg = keep ? S : GU;
  auto g_at = [&](int64_t s) -> float* { return keep ? saved + off_g + s * GU : gbuf_.data(); };
  auto rh_at = [&](int64_t s) -> float* { return keep ? saved + off_rh + s * U : rhbuf_.data(); };

  // Slot 0: the zero initial state.
  for (int64_t b = 0; b < n; ++b) {
    std::memset(h_at(0) + b * ldh, 0, sizeof(float) * U);
    if (lstm) std::memset(c_at(0) + b * ldh, 0, sizeof(float) * U);
  }
  const Act a = s_.act, ra = s_.rec_act;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = s_.go_backwards ? T - 1 - s : s;
    const float* hp = h_at(s);
    float* hn = h_at(s + 1);
    const float* cp = lstm ? c_at(s) : nullptr;
    float* cn = lstm ? c_at(s + 1) : nullptr;
    float* g = g_at(s);
    float* rh = gru ? rh_at(s) : nullptr;
    if (s == 0) {
      for (int64_t b = 0; b < n; ++b)
        for (int64_t j = 0; j < GU; ++j) rec_[b * GU + j] = rbias ? rbias[j] : 0.f;
    } else {
      Epilogue rep;
      rep.bias = rbias;
      sgemm(Trans::N, Trans::N, n, GU, U, 1.f, hp, ldh, R, GU, 0.f, rec_.data(), GU, &rep);
    }
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
    for (int64_t b = 0; b < n; ++b) {
      const float* xr = xw_.data() + (b * T + t) * GU;
      const float* rr = rec_.data() + b * GU;
      const float* h0 = hp + b * ldh;
      float* h1 = hn + b * ldh;
      float* gb = g + b * ldg;
      const bool masked = ids && ids[b * T + t] == 0.f;
      if (s_.cell == RnnCell::Simple) {
        for (int64_t j = 0; j < U; ++j) {
          gb[j] = act1(a, xr[j] + rr[j]);
          h1[j] = masked ? h0[j] : gb[j];
        }
      } else if (lstm) {
        const float* c0 = cp + b * ldh;
        float* c1 = cn + b * ldh;
        for (int64_t j = 0; j < U; ++j) {
          const float i = act1(ra, xr[j] + rr[j]);
          const float f = act1(ra, xr[U + j] + rr[U + j]);
          const float c = act1(a, xr[2 * U + j] + rr[2 * U + j]);
          const float o = act1(ra, xr[3 * U + j] + rr[3 * U + j]);
          gb[j] = i, gb[U + j] = f, gb[2 * U + j] = c, gb[3 * U + j] = o;
          const float cell = f * c0[j] + i * c;
          c1[j] = masked ? c0[j] : cell;
          h1[j] = masked ? h0[j] : o * act1(a, cell);
        }
      } else {  // GRU, reset_after: the reset gate scales the recurrent candidate term
        float* rhb = rh + b * ldh;
        for (int64_t j = 0; j < U; ++j) {
          const float z = act1(ra, xr[j] + rr[j]);
          const float r = act1(ra, xr[U + j] + rr[U + j]);
          const float hh = act1(a, xr[2 * U + j] + r * rr[2 * U + j]);
          gb[j] = z, gb[U + j] = r, gb[2 * U + j] = hh;
          rhb[j] = rr[2 * U + j];
          h1[j] = masked ? h0[j] : z * h0[j] + (1.f - z) * hh;
        }
      }
      if (s_.return_sequences) {
        float* out = y + (b * T + (s_.reverse_output ? t : s)) * U;
        if (masked && s_.zero_output_for_mask)
          std::memset(out, 0, sizeof(float) * U);
        else
          std::memcpy(out, h1, sizeof(float) * U);
      }
    }
  }
  if (!s_.return_sequences)
    for (int64_t b = 0; b < n; ++b)
      std::memcpy(y + b * U, h_at(T) + b * ldh, sizeof(float) * U);
}

void RnnNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                       float* const* dx, int64_t n, bool) {
  const int64_t T = s_.steps, F = s_.features, U = s_.units, G = s_.gates(), GU = G * U;
  const bool lstm = s_.cell == RnnCell::LSTM, gru = s_.cell == RnnCell::GRU;
  const float* W = vars[0].var->data();
  const float* R = vars[1].var->data();
  float* dW = vars[0].grad;
  float* dR = vars[1].grad;
  float* dB = vars.size() > 2 ? vars[2].grad : nullptr;
  const float* ids = inputs.size() > 1 ? x[1] : nullptr;
  const int64_t S = saved_per_sample();
  const int64_t HU = (T + 1) * U, off_c = HU, off_g = HU * (lstm ? 2 : 1),
                off_rh = off_g + T * GU;
  float* dxw = xw_.data();  // (n, T, GU): the gradient at each step's gate inputs
  const Act a = s_.act, ra = s_.rec_act;
  std::fill(dh_.data(), dh_.data() + n * U, 0.f);
  std::fill(dc_.data(), dc_.data() + n * U, 0.f);

  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = s_.go_backwards ? T - 1 - s : s;
    // The gradient at the recurrent GEMM's output: the gates' own for LSTM and
    // SimpleRNN (read in place, row stride T GU), a separate row for GRU.
    float* drec = gru ? drec_.data() : dxw + t * GU;
    const int64_t ldr = gru ? GU : T * GU;
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
    for (int64_t b = 0; b < n; ++b) {
      const float* sb = saved + b * S;
      const float* h0 = sb + s * U;
      const float* gb = sb + off_g + s * GU;
      float* dh = dh_.data() + b * U;
      float* dg = dxw + (b * T + t) * GU;
      float* dr = drec + b * ldr;
      const bool masked = ids && ids[b * T + t] == 0.f;
      if (s_.return_sequences && !(masked && s_.zero_output_for_mask)) {
        const float* d = dy + (b * T + (s_.reverse_output ? t : s)) * U;
        for (int64_t j = 0; j < U; ++j) dh[j] += d[j];
      } else if (!s_.return_sequences && s == T - 1) {
        for (int64_t j = 0; j < U; ++j) dh[j] += dy[b * U + j];
      }
      if (masked) {  // the state passed through: its gradients carry on unchanged
        std::fill(dg, dg + GU, 0.f);
        if (gru) std::fill(dr, dr + GU, 0.f);
        continue;
      }
      if (s_.cell == RnnCell::Simple) {
        for (int64_t j = 0; j < U; ++j) {
          dg[j] = dh[j] * dact1(a, gb[j]);
          dh[j] = 0.f;
        }
      } else if (lstm) {
        const float* c0 = sb + off_c + s * U;
        const float* c1 = sb + off_c + (s + 1) * U;
        float* dc = dc_.data() + b * U;
        for (int64_t j = 0; j < U; ++j) {
          const float i = gb[j], f = gb[U + j], c = gb[2 * U + j], o = gb[3 * U + j];
          const float tc = act1(a, c1[j]);
          const float dcell = dc[j] + dh[j] * o * dact1(a, tc);
          dg[j] = dcell * c * dact1(ra, i);
          dg[U + j] = dcell * c0[j] * dact1(ra, f);
          dg[2 * U + j] = dcell * i * dact1(a, c);
          dg[3 * U + j] = dh[j] * tc * dact1(ra, o);
          dc[j] = dcell * f;
          dh[j] = 0.f;
        }
      } else {
        const float* rh = sb + off_rh + s * U;
        for (int64_t j = 0; j < U; ++j) {
          const float z = gb[j], r = gb[U + j], hh = gb[2 * U + j];
          const float dhh = dh[j] * (1.f - z) * dact1(a, hh);
          const float dz = dh[j] * (h0[j] - hh) * dact1(ra, z);
          const float drr = dhh * rh[j] * dact1(ra, r);
          dg[j] = dz, dg[U + j] = drr, dg[2 * U + j] = dhh;
          dr[j] = dz, dr[U + j] = drr, dr[2 * U + j] = dhh * r;
          dh[j] = dh[j] * z;  // h1 = z h0 + ...: the direct path to the previous state
        }
      }
    }
    if (s == 0) {
      if (gru && dB) column_sums(drec, n, GU, ldr, dbias_.data(), s < T - 1);
      if (dR && T == 1) std::fill(dR, dR + U * GU, 0.f);
      break;  // the initial state is a constant: nothing flows further back
    }
    // The previous state's gradient: its direct part (above) plus drec R^T; the
    // recurrent kernel's gradient: h0^T drec, summed over the steps last to first.
    sgemm(Trans::N, Trans::T, n, U, GU, 1.f, drec, ldr, R, GU, 1.f, dh_.data(), U);
    if (dR)
      sgemm(Trans::T, Trans::N, U, GU, n, 1.f, saved + s * U, S, drec, ldr,
            s == T - 1 ? 0.f : 1.f, dR, GU);
    if (gru && dB) column_sums(drec, n, GU, ldr, dbias_.data(), s < T - 1);
  }
  if (dW) sgemm(Trans::T, Trans::N, F, GU, n * T, 1.f, x[0], F, dxw, GU, 0.f, dW, GU);
  if (dB) {
    column_sums(dxw, n * T, GU, GU, dB, false);
    if (gru) std::memcpy(dB + GU, dbias_.data(), sizeof(float) * GU);
  }
  if (dx[0]) sgemm(Trans::N, Trans::T, n * T, F, GU, 1.f, dxw, GU, W, GU, 0.f, dx[0], F);
}

}  // namespace ember
