// The recurrent node: SimpleRNN, LSTM and GRU (reset_after) forward and backward
// through time. See nodes.h for what is kept between the passes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include "ember/dense.h"
#include "ember/gemm.h"
#include "ember/nodes.h"
#include "ember/parallel.h"
#include "ember/vector_isa.h"
#include "vector_math.h"
#include "ember/random.h"

#ifdef EMBER_OPENMP
#include <omp.h>
#endif

namespace ember {

namespace {

#define EMBER_VECTOR_LOOPS "nodes/recurrent_loops.inc"
#include "ember/vector_variants.inc"

void act_inplace(Act a, float* v, int64_t len) { EMBER_VECTOR_CALL(act_inplace, a, v, len); }

void dact_inplace(Act a, const float* y, float* d, int64_t len) {
  EMBER_VECTOR_CALL(dact_inplace, a, y, d, len);
}

void lstm_row_forward(int64_t U, int64_t j0, int64_t j1, Act a, Act ra, const float* xr,
                      const float* rr, const float* c0, const float* h0, float* gb, float* c1,
                      float* h1, bool masked) {
  EMBER_VECTOR_CALL(lstm_row_forward, U, j0, j1, a, ra, xr, rr, c0, h0, gb, c1, h1, masked);
}

void lstm_row_backward(int64_t U, Act a, Act ra, const float* gb, const float* c0,
                       const float* c1, float* dh, float* dc, float* dg) {
  EMBER_VECTOR_CALL(lstm_row_backward, U, a, ra, gb, c0, c1, dh, dc, dg);
}

constexpr int64_t kParallelMin = 1 << 14;
// A few rows split the steps' units over the threads from this much work per step
// (multiply-adds of the recurrent product); below it the barriers cost more.
constexpr int64_t kByUnitsMin = int64_t(1) << 15;
// See RnnNode::stepwise.
constexpr int64_t kStepwiseRows = 128;

// Where the training forward keeps what backward reads, in the node's saved block of n
// rows: slot by slot, each slot's n rows together (row b at b U, gates at b GU): the
// states h (slots 0..T: before the first step and after each), LSTM's cells c likewise,
// each step's gates, GRU's recurrent candidate terms. A step's rows are then one block
// that backward streams through (sample by sample, they were 2 KB pieces hundreds of KB
// apart).
struct Kept {
  float* base;
  int64_t n, U, GU, T;
  bool lstm;
  float* h(int64_t slot) const { return base + slot * n * U; }
  float* c(int64_t slot) const { return base + (T + 1 + slot) * n * U; }
  float* g(int64_t s) const { return base + (T + 1) * n * U * (lstm ? 2 : 1) + s * n * GU; }
  float* rh(int64_t s) const { return g(T) + s * n * U; }
};

}  // namespace

const char* RnnNode::kind() const {
  switch (s_.cell) {
    case RnnCell::Simple: return "SimpleRNN";
    case RnnCell::GRU: return "GRU";
    default: return "LSTM";
  }
}

// Per sample: h before and after every step, c likewise (LSTM), the gates, and GRU's
// recurrent candidate term (laid out by Kept).
int64_t RnnNode::saved_per_sample() const {
  const int64_t T = s_.steps, U = s_.units, GU = s_.gates() * U;
  return (T + 1) * U * (s_.cell == RnnCell::LSTM ? 2 : 1) + T * GU +
         (s_.cell == RnnCell::GRU ? T * U : 0);
}

// The input side, x W + b forward and the gradients of x, W and b backward: for a
// batch of at least kStepwiseRows rows step by step, n rows at a time, each step's
// (n, GU) block in cache while its gates use it (at 128 rows x 200 steps, the whole
// (n, T, GU) block would be 52 MB, written and read back through memory); for fewer
// rows as single products over all T n rows (step by step, they would pack W for
// little work, and sum the kernel's gradient over n rows at a time), where xw_ has
// room for them: a smaller batch after a large one (an epoch's last) goes step by step
// in the large one's buffer. The projection's elements are the same chains of
// multiply-adds either way.
bool RnnNode::stepwise(int64_t n) const {
  return n >= kStepwiseRows || xw_.capacity() < n * s_.steps * s_.gates() * s_.units;
}

// Room in xw_ for n rows (and, in inference, for the few rows of batch-1 calls to
// project every step at once even after a large batch).
void RnnNode::plan_xw(int64_t n, bool inference) {
  const int64_t T = s_.steps, GU = s_.gates() * s_.units;
  xw_.resize(std::max(n * (n >= kStepwiseRows ? 1 : T) * GU,
                      inference ? std::min(n, kSmallM) * T * GU : 0));
}

void RnnNode::plan(int64_t n) {
  const int64_t U = s_.units, GU = s_.gates() * U;
  plan_xw(n, false);  // x W in forward, the gates' gradients in backward
  rec_.resize(n * GU);
  dh_.resize(n * U);
  dc_.resize(n * U);
  tmp_.resize(n * U);
  drec_.resize(n * GU);
  dbias_.resize(GU);
  if (s_.recurrent_dropout > 0.f) {
    rmask_.resize(n * U);
    hm_.resize(n * U);
  }
}

bool RnnNode::plan_inference(int64_t n) {
  const int64_t U = s_.units, GU = s_.gates() * U;
  plan_xw(n, true);
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
  // GRU without reset_after: the reset gate is needed before the candidate's product.
  const bool split = gru && !s_.reset_after;
  const float* W = vars[0].var->data();
  const float* R = vars[1].var->data();
  const float* bias = vars.size() > 2 ? vars[2].var->data() : nullptr;
  const float* rbias = gru && s_.reset_after && bias ? bias + GU : nullptr;
  const float* ids = static_cast<int>(inputs.size()) > data_inputs ? x[data_inputs] : nullptr;
  const bool keep = ctx.training && saved != nullptr;
  const int64_t ldy = out_size, main = s_.return_sequences ? T * U : U;

  Epilogue ep;
  ep.bias = bias;
  const bool upfront = !stepwise(n);
  if (upfront)
    sgemm(Trans::N, Trans::N, n * T, GU, F, 1.f, x[0], F, W, GU, 0.f, xw_.data(), GU, &ep);
  // Row b's x W + b at time t.
  auto xw_at = [&](int64_t b, int64_t t) {
    return xw_.data() + (upfront ? b * T + t : b) * GU;
  };

  // Where step s's states and gates live, row b at b U (gates: b GU): kept for backward
  // when training, else two alternating (n, U) buffers.
  const Kept kept{saved, n, U, GU, T, lstm};
  auto h_at = [&](int64_t slot) -> float* {
    return keep ? kept.h(slot) : hbuf_.data() + (slot % 2) * n * U;
  };
  auto c_at = [&](int64_t slot) -> float* {
    return keep ? kept.c(slot) : cbuf_.data() + (slot % 2) * n * U;
  };
  auto g_at = [&](int64_t s) -> float* { return keep ? kept.g(s) : gbuf_.data(); };
  auto rh_at = [&](int64_t s) -> float* { return keep ? kept.rh(s) : rhbuf_.data(); };

  // Slot 0: the initial state: given, carried from the last batch (stateful), or zeros.
  const bool carried = s_.stateful && !s_.initial_state && state_rows_ >= 0;
  if (s_.stateful && carried && state_rows_ != n)
    throw std::invalid_argument(
        std::string(kind()) + " (stateful=True) keeps a state per row of the batch: every "
        "batch must have " + std::to_string(state_rows_) + " samples, as the first one had "
        "(pass batch_size=" + std::to_string(state_rows_) + " and a sample count it divides). "
        "Received a batch of " + std::to_string(n));
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t k = 0; k < (lstm ? 2 : 1); ++k) {
      float* dst = (k == 0 ? h_at(0) : c_at(0)) + b * U;
      if (s_.initial_state)
        std::memcpy(dst, x[1 + k] + b * U, sizeof(float) * U);
      else if (carried)
        std::memcpy(dst, state_[k].data() + b * U, sizeof(float) * U);
      else
        std::memset(dst, 0, sizeof(float) * U);
    }
  }
  const Act a = s_.act, ra = s_.rec_act;
  rdrop_ = keep && s_.recurrent_dropout > 0.f;
  if (rdrop_) {
    const float rate = s_.recurrent_dropout, scale = 1.f / (1.f - rate);
    fill_uniform(rmask_.data(), n * U, 0.f, 1.f, s_.seed, ctx.step);
    for (int64_t i = 0; i < n * U; ++i) rmask_[i] = rmask_[i] >= rate ? scale : 0.f;
  }
  // The recurrent product of step s into rec_, for units [j0, j1) of every gate block
  // (GRU without reset_after: of z and r; its candidate's product comes after r). Its
  // input is hr, rows U apart. One product where that is every unit; each element is
  // the same chain of multiply-adds either way.
  const bool carried_or_given = s_.initial_state || carried;
  auto recurrent = [&](int64_t s, const float* hr, int64_t j0, int64_t j1) {
    if (s == 0 && !carried_or_given) {  // the product of a zero state is its bias alone
      for (int64_t b = 0; b < n; ++b)
        for (int64_t k = 0; k < G; ++k)
          for (int64_t j = k * U + j0; j < k * U + j1; ++j)
            rec_[b * GU + j] = rbias ? rbias[j] : 0.f;
      return;
    }
    const int64_t blocks = split ? 2 : G;
    Epilogue rep;
    if (j0 == 0 && j1 == U) {
      rep.bias = rbias;
      sgemm(Trans::N, Trans::N, n, blocks * U, U, 1.f, hr, U, R, GU, 0.f, rec_.data(), GU,
            &rep);
      return;
    }
    int64_t starts[4];
    for (int64_t k = 0; k < blocks; ++k) starts[k] = k * U + j0;
    sgemm_small_columns(n, U, hr, U, R, GU, rec_.data(), GU, rbias, starts, blocks, j1 - j0);
  };
  // Batch row b at step s (time t), units [j0, j1): the gates' inputs, their
  // activations block by block, then the state update and the output.
  auto cell = [&](int64_t b, int64_t s, int64_t t, int64_t j0, int64_t j1) {
    const float* xr = xw_at(b, t);
    const float* rr = rec_.data() + b * GU;
    const float* h0 = h_at(s) + b * U;
    float* h1 = h_at(s + 1) + b * U;
    float* gb = g_at(s) + b * GU;
    const int64_t w = j1 - j0;
    const bool masked = ids && ids[b * T + t] == 0.f;
    auto sum_inputs = [&](int64_t k) {  // gate block k: x W + h R (+ biases)
      for (int64_t j = k * U + j0; j < k * U + j1; ++j) gb[j] = xr[j] + rr[j];
    };
    if (s_.cell == RnnCell::Simple) {
      sum_inputs(0);
      act_inplace(a, gb + j0, w);
      for (int64_t j = j0; j < j1; ++j) h1[j] = masked ? h0[j] : gb[j];
    } else if (lstm) {
      lstm_row_forward(U, j0, j1, a, ra, xr, rr, c_at(s) + b * U, h0, gb,
                       c_at(s + 1) + b * U, h1, masked);
    } else {  // GRU
      float* gh = gb + 2 * U;
      if (split) {  // z and r are in place already
        for (int64_t j = j0; j < j1; ++j) gh[j] = xr[2 * U + j] + rr[2 * U + j];
      } else {  // reset_after: the reset gate scales the recurrent candidate term
        float* rhb = rh_at(s) + b * U;
        sum_inputs(0);
        sum_inputs(1);
        act_inplace(ra, gb + j0, w);
        act_inplace(ra, gb + U + j0, w);
        for (int64_t j = j0; j < j1; ++j) {
          rhb[j] = rr[2 * U + j];
          gh[j] = xr[2 * U + j] + gb[U + j] * rr[2 * U + j];
        }
      }
      act_inplace(a, gh + j0, w);
      const float* gz = gb;
      for (int64_t j = j0; j < j1; ++j)
        h1[j] = masked ? h0[j] : gz[j] * h0[j] + (1.f - gz[j]) * gh[j];
    }
    if (s_.return_sequences) {
      float* out = y + b * ldy + (s_.reverse_output ? t : s) * U;
      if (masked && s_.zero_output_for_mask)
        std::memset(out + j0, 0, sizeof(float) * w);
      else
        std::memcpy(out + j0, h1 + j0, sizeof(float) * w);
    }
  };
  auto time_of = [&](int64_t s) { return s_.go_backwards ? T - 1 - s : s; };

  // A few rows (batch-1 inference and the like): every thread takes a share of the
  // units, the same columns of every gate block, for all the steps, with a barrier
  // between steps. Its share of the recurrent kernel (U x GU / threads) stays in its
  // own cache from step to step, where one thread would stream all of it every step.
  // A product's columns are the same sums whoever computes them: the same bits.
  const int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), U / 16));
  if (upfront && n <= kSmallM && !split && !rdrop_ && threads > 1 &&
      n * U * GU >= kByUnitsMin) {
    SpinBarrier barrier;
#pragma omp parallel num_threads(threads)
    {
#ifdef EMBER_OPENMP
      const int th = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int th = 0, nth = 1;
#endif
      // Shares in whole vectors of 16 units.
      const int64_t j0 = U / 16 * th / nth * 16;
      const int64_t j1 = th + 1 == nth ? U : U / 16 * (th + 1) / nth * 16;
      SerialGemm serial(true);
      for (int64_t s = 0; s < T; ++s) {
        recurrent(s, h_at(s), j0, j1);
        for (int64_t b = 0; b < n; ++b) cell(b, s, time_of(s), j0, j1);
        barrier.wait(nth);  // step s + 1 reads every unit of step s's state
      }
    }
  } else {
    // A step this small runs faster on one thread than split over several.
    const bool small = n * U * GU < (int64_t(1) << 20);
    for (int64_t s = 0; s < T; ++s) {
      const int64_t t = time_of(s);
      const float* hp = h_at(s);
      SerialGemm serial(small);
      if (!upfront)
        sgemm(Trans::N, Trans::N, n, GU, F, 1.f, x[0] + t * F, T * F, W, GU, 0.f, xw_.data(),
              GU, &ep);
      const float* hr = hp;  // the state as the recurrent product sees it
      if (rdrop_ && (s > 0 || carried_or_given)) {
        for (int64_t i = 0; i < n * U; ++i) hm_[i] = hp[i] * rmask_[i];
        hr = hm_.data();
      }
      recurrent(s, hr, 0, U);
      if (split) {  // z and r first, then the candidate's product over r h
        float* g = g_at(s);
        float* rh = rh_at(s);
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
        for (int64_t b = 0; b < n; ++b) {
          const float* xr = xw_at(b, t);
          const float* rr = rec_.data() + b * GU;
          float* gb = g + b * GU;
          for (int64_t j = 0; j < 2 * U; ++j) gb[j] = xr[j] + rr[j];
          act_inplace(ra, gb, 2 * U);
          for (int64_t j = 0; j < U; ++j) rh[b * U + j] = gb[U + j] * hr[b * U + j];
        }
        if (s > 0 || carried_or_given)
          sgemm(Trans::N, Trans::N, n, U, U, 1.f, rh, U, R + 2 * U, GU, 0.f,
                rec_.data() + 2 * U, GU);
      }
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
      for (int64_t b = 0; b < n; ++b) cell(b, s, t, 0, U);
    }
  }
  if (s_.stateful && !s_.initial_state) {  // the next batch starts here
    for (int k = 0; k < (lstm ? 2 : 1); ++k) {
      state_[k].resize(n * U);
      for (int64_t b = 0; b < n; ++b)
        std::memcpy(state_[k].data() + b * U, (k == 0 ? h_at(T) : c_at(T)) + b * U,
                    sizeof(float) * U);
    }
    state_rows_ = n;
  }
  for (int64_t b = 0; b < n; ++b) {
    float* row = y + b * ldy;
    if (!s_.return_sequences) std::memcpy(row, h_at(T) + b * U, sizeof(float) * U);
    if (s_.return_state) {
      std::memcpy(row + main, h_at(T) + b * U, sizeof(float) * U);
      if (lstm) std::memcpy(row + main + U, c_at(T) + b * U, sizeof(float) * U);
    }
  }
}

void RnnNode::backward(const StepCtx&, const float* const* x, const float*, float* dy,
                       float* const* dx, int64_t n, bool) {
  const int64_t T = s_.steps, F = s_.features, U = s_.units, G = s_.gates(), GU = G * U;
  const bool lstm = s_.cell == RnnCell::LSTM, gru = s_.cell == RnnCell::GRU;
  const bool split = gru && !s_.reset_after;
  const float* W = vars[0].var->data();
  const float* R = vars[1].var->data();
  float* dW = vars[0].grad;
  float* dR = vars[1].grad;
  float* dB = vars.size() > 2 ? vars[2].grad : nullptr;
  const float* ids = static_cast<int>(inputs.size()) > data_inputs ? x[data_inputs] : nullptr;
  const Kept kept{saved, n, U, GU, T, lstm};
  const int64_t ldy = out_size, main = s_.return_sequences ? T * U : U;
  // The gradient at the gates' inputs: (n, GU) for the current step, else (n, T, GU).
  const bool by_step = stepwise(n);
  float* dxw = xw_.data();
  const int64_t ldg = by_step ? GU : T * GU;
  const Act a = s_.act, ra = s_.rec_act;
  // The final states' own gradients (return_state), else zeros.
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t k = 0; k < (lstm ? 2 : 1); ++k) {
      float* d = (k == 0 ? dh_.data() : dc_.data()) + b * U;
      if (s_.return_state)
        std::memcpy(d, dy + b * ldy + main + k * U, sizeof(float) * U);
      else
        std::fill(d, d + U, 0.f);
    }
  }

  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = s_.go_backwards ? T - 1 - s : s;
    // The gradient at the recurrent GEMM's output: the gates' own for LSTM, SimpleRNN
    // and GRU without reset_after (read in place), a separate row for GRU with it.
    const bool own_drec = gru && s_.reset_after;
    float* dgs = by_step ? dxw : dxw + t * GU;  // row b at dgs + b ldg
    float* drec = own_drec ? drec_.data() : dgs;
    const int64_t ldr = own_drec ? GU : ldg;
    // The state the recurrent product read.
    const float* hr = kept.h(s);  // row b at b U
    if (rdrop_) {
      for (int64_t i = 0; i < n * U; ++i) hm_[i] = hr[i] * rmask_[i];
      hr = hm_.data();
    }
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
    for (int64_t b = 0; b < n; ++b) {
      const float* h0 = kept.h(s) + b * U;
      const float* gb = kept.g(s) + b * GU;
      float* dh = dh_.data() + b * U;
      float* dg = dgs + b * ldg;
      float* dr = drec + b * ldr;
      const bool masked = ids && ids[b * T + t] == 0.f;
      if (s_.return_sequences && !(masked && s_.zero_output_for_mask)) {
        const float* d = dy + b * ldy + (s_.reverse_output ? t : s) * U;
        for (int64_t j = 0; j < U; ++j) dh[j] += d[j];
      } else if (!s_.return_sequences && s == T - 1) {
        for (int64_t j = 0; j < U; ++j) dh[j] += dy[b * ldy + j];
      }
      if (masked) {  // the state passed through: its gradients carry on unchanged
        std::fill(dg, dg + GU, 0.f);
        if (own_drec) std::fill(dr, dr + GU, 0.f);
        continue;
      }
      if (s_.cell == RnnCell::Simple) {
        for (int64_t j = 0; j < U; ++j) dg[j] = dh[j];
        dact_inplace(a, gb, dg, U);
        std::fill(dh, dh + U, 0.f);
      } else if (lstm) {
        lstm_row_backward(U, a, ra, gb, kept.c(s) + b * U, kept.c(s + 1) + b * U, dh,
                          dc_.data() + b * U, dg);
      } else {
        const float* rh = kept.rh(s) + b * U;
        const float *gz = gb, *gr = gb + U, *gh = gb + 2 * U;
        for (int64_t j = 0; j < U; ++j) {
          dg[2 * U + j] = dh[j] * (1.f - gz[j]);
          dg[j] = dh[j] * (h0[j] - gh[j]);
          dh[j] *= gz[j];  // h1 = z h0 + ...: the direct path to the previous state
        }
        dact_inplace(a, gh, dg + 2 * U, U);
        if (split) {
          dact_inplace(ra, gz, dg, U);  // r's gradient needs d(r h) first (below)
          std::fill(dg + U, dg + 2 * U, 0.f);
        } else {
          for (int64_t j = 0; j < U; ++j) dg[U + j] = dg[2 * U + j] * rh[j];
          dact_inplace(ra, gb, dg, 2 * U);
          for (int64_t j = 0; j < 2 * U; ++j) dr[j] = dg[j];
          for (int64_t j = 0; j < U; ++j) dr[2 * U + j] = dg[2 * U + j] * gr[j];
        }
      }
    }
    if (split) {
      // d(r h) = dh~ W_rec_h^T; then r's gradient d(r h) h and the state's d(r h) r.
      sgemm(Trans::N, Trans::T, n, U, U, 1.f, dgs + 2 * U, ldg, R + 2 * U, GU, 0.f,
            tmp_.data(), U);
#pragma omp parallel for schedule(static) if (n * GU > kParallelMin)
      for (int64_t b = 0; b < n; ++b) {
        const float* gr = kept.g(s) + b * GU + U;
        float* dg = dgs + b * ldg;
        float* d = tmp_.data() + b * U;
        for (int64_t j = 0; j < U; ++j) {
          dg[U + j] = d[j] * hr[b * U + j];
          d[j] *= gr[j];
        }
        dact_inplace(ra, gr, dg + U, U);
      }
    }
    if (by_step) {  // this step's part of the input's gradient and of W's and b's sums
      const bool first = s == T - 1;
      if (dx[0])
        sgemm(Trans::N, Trans::T, n, F, GU, 1.f, dgs, GU, W, GU, 0.f, dx[0] + t * F, T * F);
      if (dW)
        sgemm(Trans::T, Trans::N, F, GU, n, 1.f, x[0] + t * F, T * F, dgs, GU,
              first ? 0.f : 1.f, dW, GU);
      if (dB) column_sums(dgs, n, GU, GU, dB, !first);
    }
    if (s == 0 && !s_.initial_state && !s_.stateful) {
      if (own_drec && dB) column_sums(drec, n, GU, ldr, dbias_.data(), s < T - 1);
      if (dR && T == 1) std::fill(dR, dR + U * GU, 0.f);
      break;  // the initial state is zero: nothing flows further back
    }
    // The previous state's gradient: its direct part (above) plus drec R^T; the
    // recurrent kernel's gradient: hr^T drec, summed over the steps last to first.
    const float beta = s == T - 1 ? 0.f : 1.f;
    if (split) {
      sgemm(Trans::N, Trans::T, n, U, 2 * U, 1.f, drec, ldr, R, GU, 1.f, tmp_.data(), U);
      for (int64_t i = 0; i < n * U; ++i) dh_[i] += rdrop_ ? tmp_[i] * rmask_[i] : tmp_[i];
      if (dR) {
        sgemm(Trans::T, Trans::N, U, 2 * U, n, 1.f, hr, U, drec, ldr, beta, dR, GU);
        sgemm(Trans::T, Trans::N, U, U, n, 1.f, kept.rh(s), U, drec + 2 * U, ldr, beta,
              dR + 2 * U, GU);
      }
    } else {
      if (rdrop_) {
        sgemm(Trans::N, Trans::T, n, U, GU, 1.f, drec, ldr, R, GU, 0.f, tmp_.data(), U);
        for (int64_t i = 0; i < n * U; ++i) dh_[i] += tmp_[i] * rmask_[i];
      } else {
        sgemm(Trans::N, Trans::T, n, U, GU, 1.f, drec, ldr, R, GU, 1.f, dh_.data(), U);
      }
      if (dR) sgemm(Trans::T, Trans::N, U, GU, n, 1.f, hr, U, drec, ldr, beta, dR, GU);
    }
    if (own_drec && dB) column_sums(drec, n, GU, ldr, dbias_.data(), s < T - 1);
  }
  if (s_.initial_state) {
    if (dx[1]) std::memcpy(dx[1], dh_.data(), sizeof(float) * n * U);
    if (lstm && dx[2]) std::memcpy(dx[2], dc_.data(), sizeof(float) * n * U);
  }
  if (!by_step) {
    if (dW) sgemm(Trans::T, Trans::N, F, GU, n * T, 1.f, x[0], F, dxw, GU, 0.f, dW, GU);
    if (dB) column_sums(dxw, n * T, GU, GU, dB, false);
    if (dx[0]) sgemm(Trans::N, Trans::T, n * T, F, GU, 1.f, dxw, GU, W, GU, 0.f, dx[0], F);
  }
  if (dB && gru && s_.reset_after) std::memcpy(dB + GU, dbias_.data(), sizeof(float) * GU);
}

}  // namespace ember
