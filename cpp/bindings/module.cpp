// module.cpp: the pybind11 module ember._core. Thin: checks dtypes, shapes and
// contiguity, allocates outputs with the GIL held, computes with it released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <string>

#include "ember/activations.h"
#include "ember/checks.h"
#include "ember/conv2d.h"
#include "ember/dense.h"
#include "ember/gemm.h"
#include "ember/graph.h"
#include "ember/hashing.h"
#include "ember/losses.h"
#include "ember/metrics.h"
#include "ember/nodes.h"
#include "ember/optimizers.h"
#include "ember/parallel.h"
#include "ember/pooling.h"
#include "ember/random.h"
#include "ember/vector_isa.h"

namespace py = pybind11;
using namespace ember;

namespace {

using F32 = py::array_t<float, py::array::c_style>;
using F64 = py::array_t<double, py::array::c_style>;

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Whether a's dtype is T in native byte order. Compared as numpy compares types, not
// by identity: an unpickled array carries its own, equal, dtype object.
template <class T>
bool has_dtype(const py::array& a) { return py::array_t<T, 0>::check_(a); }

// A C-contiguous array of exactly dtype T, or ValueError naming what came instead.
template <class T>
py::array_t<T, py::array::c_style> strict(const py::handle& h, const char* what,
                                          bool writable = false) {
  if (!py::isinstance<py::array>(h))
    throw std::invalid_argument(std::string(what) + " must be a numpy array");
  py::array a = py::reinterpret_borrow<py::array>(h);
  if (!has_dtype<T>(a))
    throw std::invalid_argument(std::string(what) + " must have dtype " +
                                py::str(py::dtype::of<T>()).cast<std::string>() +
                                ". Received: " + dtype_str(a));
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + " must be C-contiguous");
  if (writable && !a.writeable())
    throw std::invalid_argument(std::string(what) + " must be writable");
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(a);
}

// A numpy view of engine memory that keeps `owner` alive.
py::array view(float* data, std::vector<int64_t> shape, py::handle owner) {
  return py::array_t<float>(shape, data, owner);
}

// A list of arrays from a list/tuple, or a one-element list from anything else.
py::list as_list(const py::object& o) {
  if (py::isinstance<py::list>(o) || py::isinstance<py::tuple>(o)) return py::list(o);
  py::list l;
  l.append(o);
  return l;
}

Batch make_batch(Graph& g, const py::object& xs, const py::object& ys, const py::object& sw,
                 const py::object& idx, int64_t start, int64_t n, bool need_targets) {
  Batch b;
  py::list xl = as_list(xs);
  if (static_cast<int>(xl.size()) != g.num_inputs())
    throw std::invalid_argument("The model takes " + std::to_string(g.num_inputs()) +
                                " inputs. Received: " + std::to_string(xl.size()));
  for (int i = 0; i < g.num_inputs(); ++i) {
    auto xa = strict<float>(xl[i], "x");
    const int64_t per = g.input_size(i);
    if (xa.ndim() < 1 || xa.size() % per != 0 || xa.shape(0) * per != xa.size())
      throw std::invalid_argument("x does not match the model's input size " +
                                  std::to_string(per));
    if (i > 0 && xa.shape(0) != b.rows)
      throw std::invalid_argument("All inputs must have the same number of samples");
    b.rows = xa.shape(0);
    b.x.push_back(xa.data());
  }
  if (need_targets) {
    py::list yl = as_list(ys);
    if (static_cast<int>(yl.size()) != g.num_outputs())
      throw std::invalid_argument("Expected targets for " + std::to_string(g.num_outputs()) +
                                  " outputs. Received: " + std::to_string(yl.size()));
    b.labels.assign(g.num_outputs(), nullptr);
    b.y.assign(g.num_outputs(), nullptr);
    for (int o = 0; o < g.num_outputs(); ++o) {
      if (yl[o].is_none()) continue;
      if (g.output_is_sparse(o)) {
        auto la = strict<int32_t>(yl[o], "labels");
        if (la.size() != b.rows * g.output_rows(o))
          throw std::invalid_argument("labels must have one entry per row and position");
        b.labels[o] = la.data();
      } else {
        auto ya = strict<float>(yl[o], "y");
        if (ya.size() != b.rows * g.output_size(o))
          throw std::invalid_argument("y does not match the model's output size");
        b.y[o] = ya.data();
      }
    }
    if (!sw.is_none()) {
      auto wa = strict<float>(sw, "sample_weight");
      if (wa.size() != b.rows)
        throw std::invalid_argument("sample_weight must have one entry per row");
      b.sw = wa.data();
    }
  }
  if (!idx.is_none()) {
    auto ia = strict<int64_t>(idx, "indices");
    b.idx = ia.data();
    b.n = ia.size();
  } else {
    b.start = start;
    b.n = n;
  }
  return b;
}

bool parse_padding(const std::string& p) {
  if (p == "same") return true;
  if (p == "valid") return false;
  throw std::invalid_argument("padding must be 'valid' or 'same'. Received: padding='" + p + "'");
}

bool is_f64(const py::array& a) { return has_dtype<double>(a); }

// (n, h, w, c) of an image batch, or ValueError.
std::array<int64_t, 4> nhwc(const py::array& x, const char* who) {
  if (x.ndim() != 4)
    throw std::invalid_argument(std::string(who) + ": x must be (batch, height, width, "
                                "channels). Received ndim=" + std::to_string(x.ndim()));
  return {x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
}

Conv2DShape conv_shape_of(const py::array& x, const py::array& w, std::array<int64_t, 2> st,
                          std::array<int64_t, 2> dil, const std::string& padding) {
  const auto d = nhwc(x, "conv2d");
  if (w.ndim() != 4 || w.shape(2) != d[3])
    throw std::invalid_argument("conv2d: the kernel must be (kh, kw, in_channels, filters) "
                                "with in_channels = x's channels");
  return conv2d_shape(d[0], d[1], d[2], d[3], w.shape(0), w.shape(1), w.shape(3), st[0], st[1],
                      dil[0], dil[1], parse_padding(padding));
}

py::tuple result_tuple(const StepResult& r) {
  return py::make_tuple(r.loss_sum, py::cast(r.metric_sums), py::cast(r.output_loss_sums));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "ember's compiled core (private: use the ember package)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::logic_error& e) {  // includes invalid_argument
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("forked_child", &forked_child);
  m.attr("MAX_THREADS") = kMaxThreads;
  m.def("openmp_enabled", &openmp_enabled);
  m.def("gemm_kernel_name", [] { return std::string(gemm_kernel().name); });
  m.def("vector_isa_name", [] { return std::string(vector_isa_name(vector_isa())); });

  // Flat index of the first NaN/inf in a C-contiguous float32 array, or -1.
  m.def("first_nonfinite", [](py::array a) -> int64_t {
    auto x = strict<float>(a, "array");
    const float* p = x.data();
    const int64_t n = x.size();
    py::gil_scoped_release nogil;
    return first_nonfinite(p, n);
  }, py::arg("array"));

  m.def("fill_uniform", [](py::array out, float lo, float hi, uint64_t seed, uint64_t stream) {
    auto o = strict<float>(out, "out", true);
    float* p = o.mutable_data();
    const int64_t n = o.size();
    py::gil_scoped_release nogil;
    fill_uniform(p, n, lo, hi, seed, stream);
  }, py::arg("out"), py::arg("low"), py::arg("high"), py::arg("seed"), py::arg("stream") = 0);
  m.def("fill_normal", [](py::array out, float mean, float stddev, uint64_t seed,
                          uint64_t stream, bool truncated) {
    auto o = strict<float>(out, "out", true);
    float* p = o.mutable_data();
    const int64_t n = o.size();
    py::gil_scoped_release nogil;
    fill_normal(p, n, mean, stddev, seed, stream, truncated);
  }, py::arg("out"), py::arg("mean"), py::arg("stddev"), py::arg("seed"), py::arg("stream") = 0,
     py::arg("truncated") = false);

  // C = alpha op(A) op(B) + beta C, in place on c. For tests and benchmarks.
  m.def("sgemm", [](py::array a, py::array b, py::array c, bool trans_a, bool trans_b,
                    float alpha, float beta, bool reference) {
    auto A = strict<float>(a, "a"), B = strict<float>(b, "b");
    auto C = strict<float>(c, "c", true);
    if (A.ndim() != 2 || B.ndim() != 2 || C.ndim() != 2)
      throw std::invalid_argument("sgemm: a, b and c must be 2-D");
    const int64_t M = trans_a ? A.shape(1) : A.shape(0), K = trans_a ? A.shape(0) : A.shape(1);
    const int64_t Kb = trans_b ? B.shape(1) : B.shape(0), N = trans_b ? B.shape(0) : B.shape(1);
    if (K != Kb || C.shape(0) != M || C.shape(1) != N)
      throw std::invalid_argument("sgemm: shapes do not agree");
    const float* pa = A.data();
    const float* pb = B.data();
    float* pc = C.mutable_data();
    const int64_t lda = A.shape(1), ldb = B.shape(1);
    py::gil_scoped_release nogil;
    (reference ? sgemm_ref : sgemm)(trans_a ? Trans::T : Trans::N, trans_b ? Trans::T : Trans::N,
                                    M, N, K, alpha, pa, lda, pb, ldb, beta, pc, N, nullptr);
  }, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("trans_a") = false,
     py::arg("trans_b") = false, py::arg("alpha") = 1.f, py::arg("beta") = 0.f,
     py::arg("reference") = false);

  // Kernel entry points for the tests: float32 runs the fast kernels, float64 the
  // references (used for finite-difference gradient checks).
  m.def("activation_forward", [](py::array x, const std::string& name, float alpha) -> py::array {
    const Act a = act_from_string(name);
    if (x.ndim() != 2) throw std::invalid_argument("activation_forward: x must be 2-D");
    const int64_t r = x.shape(0), c = x.shape(1);
    if (has_dtype<double>(x)) {
      auto xa = strict<double>(x, "x");
      F64 y({r, c});
      act_forward<double>(a, xa.data(), y.mutable_data(), r, c, alpha);
      return y;
    }
    auto xa = strict<float>(x, "x");
    F32 y({r, c});
    act_forward<float>(a, xa.data(), y.mutable_data(), r, c, alpha);
    return y;
  }, py::arg("x"), py::arg("name"), py::arg("alpha") = kDefaultAlpha);
  // dx for dy at output y (and input x, which some activations need).
  m.def("activation_backward", [](py::array y, py::array dy, const std::string& name,
                                  float alpha, py::object x) -> py::array {
    const Act a = act_from_string(name);
    if (y.ndim() != 2 || dy.ndim() != 2 || y.shape(0) != dy.shape(0) || y.shape(1) != dy.shape(1))
      throw std::invalid_argument("activation_backward: y and dy must be 2-D, same shape");
    if (!x.is_none() && py::array(x).size() != y.size())
      throw std::invalid_argument("activation_backward: x must match y");
    const int64_t r = y.shape(0), c = y.shape(1);
    if (has_dtype<double>(y)) {
      auto ya = strict<double>(y, "y"), da = strict<double>(dy, "dy");
      F64 xa = x.is_none() ? F64() : strict<double>(x, "x");
      F64 dx({r, c});
      act_backward<double>(a, ya.data(), da.data(), dx.mutable_data(), r, c, alpha,
                           x.is_none() ? nullptr : xa.data());
      return dx;
    }
    auto ya = strict<float>(y, "y"), da = strict<float>(dy, "dy");
    F32 xa = x.is_none() ? F32() : strict<float>(x, "x");
    F32 dx({r, c});
    act_backward<float>(a, ya.data(), da.data(), dx.mutable_data(), r, c, alpha,
                        x.is_none() ? nullptr : xa.data());
    return dx;
  }, py::arg("y"), py::arg("dy"), py::arg("name"), py::arg("alpha") = kDefaultAlpha,
     py::arg("x") = py::none());
  m.def("dense_forward", [](py::array x, py::array w, py::object b, const std::string& act) -> py::array {
    const Act a = act_from_string(act);
    if (x.ndim() != 2 || w.ndim() != 2 || x.shape(1) != w.shape(0))
      throw std::invalid_argument("dense_forward: x (n, in) and w (in, out) do not agree");
    const int64_t n = x.shape(0), in = w.shape(0), out = w.shape(1);
    if (has_dtype<double>(x)) {
      auto xa = strict<double>(x, "x"), wa = strict<double>(w, "w");
      F64 ba = b.is_none() ? F64() : strict<double>(b, "b");
      F64 y({n, out});
      dense_forward_ref<double>(xa.data(), wa.data(), b.is_none() ? nullptr : ba.data(),
                                y.mutable_data(), n, in, out, a);
      return y;
    }
    auto xa = strict<float>(x, "x"), wa = strict<float>(w, "w");
    F32 ba = b.is_none() ? F32() : strict<float>(b, "b");
    F32 y({n, out});
    dense_forward(xa.data(), wa.data(), b.is_none() ? nullptr : ba.data(), y.mutable_data(), n,
                  in, out, a);
    return y;
  });
  // Returns (dx, dw, db) for dz, the gradient at the pre-activation.
  m.def("dense_backward", [](py::array x, py::array w, py::array dz) -> py::tuple {
    if (x.ndim() != 2 || w.ndim() != 2 || dz.ndim() != 2 || x.shape(1) != w.shape(0) ||
        dz.shape(0) != x.shape(0) || dz.shape(1) != w.shape(1))
      throw std::invalid_argument("dense_backward: shapes do not agree");
    const int64_t n = x.shape(0), in = w.shape(0), out = w.shape(1);
    if (has_dtype<double>(x)) {
      auto xa = strict<double>(x, "x"), wa = strict<double>(w, "w"), da = strict<double>(dz, "dz");
      F64 dx({n, in}), dw({in, out}), db({out});
      dense_backward_ref<double>(xa.data(), wa.data(), da.data(), dx.mutable_data(),
                                 dw.mutable_data(), db.mutable_data(), n, in, out);
      return py::make_tuple(dx, dw, db);
    }
    auto xa = strict<float>(x, "x"), wa = strict<float>(w, "w"), da = strict<float>(dz, "dz");
    F32 dx({n, in}), dw({in, out}), db({out});
    dense_backward(xa.data(), wa.data(), da.data(), dx.mutable_data(), dw.mutable_data(),
                   db.mutable_data(), n, in, out);
    return py::make_tuple(dx, dw, db);
  });
  // Each string's bucket: Fingerprint64 mod bins, or SipHash-2-4 under salt (k0, k1).
  m.def("hash_buckets", [](const std::vector<std::string>& strings, int64_t bins,
                           const py::object& salt) {
    const bool salted = !salt.is_none();
    uint64_t k0 = 0, k1 = 0;
    if (salted) {
      auto key = salt.cast<std::pair<uint64_t, uint64_t>>();
      k0 = key.first;
      k1 = key.second;
    }
    py::array_t<int64_t> out(static_cast<py::ssize_t>(strings.size()));
    {
      py::gil_scoped_release nogil;
      hash_buckets(strings, bins, salted, k0, k1, out.mutable_data());
    }
    return out;
  }, py::arg("strings"), py::arg("bins"), py::arg("salt") = py::none());

  // One image (h, w, c) resized to (height, width, c) as the Resizing layer does it.
  m.def("resize_image", [](py::array image, int64_t height, int64_t width, bool nearest,
                           bool crop_to_aspect) {
    auto x = strict<float>(image, "image");
    if (x.ndim() != 3 || x.size() == 0)
      throw std::invalid_argument("resize_image: expected one non-empty (h, w, c) image");
    if (height < 1 || width < 1)
      throw std::invalid_argument("resize_image: the size must be positive");
    const ResizeNode node = ResizeNode::of_image(x.shape(0), x.shape(1), x.shape(2), height,
                                                 width, nearest, crop_to_aspect);
    F32 y({height, width, static_cast<int64_t>(x.shape(2))});
    {
      py::gil_scoped_release nogil;
      node.resize_one(x.data(), y.mutable_data());
    }
    return y;
  }, py::arg("image"), py::arg("height"), py::arg("width"), py::arg("nearest") = false,
     py::arg("crop_to_aspect") = false);

  // (loss_sum, grad): grad at out, or at the pre-activation when fused with `act`.
  m.def("loss", [](const std::string& name, py::array out, py::array target, bool from_logits,
                   const std::string& act, double scale, py::object sample_weight,
                   double param, double param2) -> py::tuple {
    const Loss l = loss_from_string(name);
    const Act a = act_from_string(act);
    if (out.ndim() != 2) throw std::invalid_argument("loss: out must be 2-D");
    const int64_t n = out.shape(0), c = out.shape(1);
    py::array_t<int32_t, py::array::c_style> labels;
    if (loss_sparse(l)) {
      labels = strict<int32_t>(target, "labels");
      if (labels.size() != n) throw std::invalid_argument("loss: one label per row");
    } else if (target.size() != n * c) {
      throw std::invalid_argument("loss: target must match out");
    }
    const int32_t* lp = loss_sparse(l) ? labels.data() : nullptr;
    auto check_sw = [&](const py::array& w) {
      if (w.size() != n) throw std::invalid_argument("loss: one sample weight per row");
    };
    if (has_dtype<double>(out)) {
      auto o = strict<double>(out, "out");
      F64 t = loss_sparse(l) ? F64() : strict<double>(target, "target");
      F64 w = sample_weight.is_none() ? F64() : strict<double>(sample_weight, "sample_weight");
      if (!sample_weight.is_none()) check_sw(w);
      F64 g({n, c});
      double s = loss_forward_backward<double>(l, from_logits, a, o.data(), lp,
                                               loss_sparse(l) ? nullptr : t.data(),
                                               sample_weight.is_none() ? nullptr : w.data(),
                                               g.mutable_data(), n, c, scale, param,
                                               param2);
      return py::make_tuple(s, g);
    }
    auto o = strict<float>(out, "out");
    F32 t = loss_sparse(l) ? F32() : strict<float>(target, "target");
    F32 w = sample_weight.is_none() ? F32() : strict<float>(sample_weight, "sample_weight");
    if (!sample_weight.is_none()) check_sw(w);
    F32 g({n, c});
    double s = loss_forward_backward<float>(l, from_logits, a, o.data(), lp,
                                            loss_sparse(l) ? nullptr : t.data(),
                                            sample_weight.is_none() ? nullptr : w.data(),
                                            g.mutable_data(), n, c, static_cast<float>(scale),
                                            static_cast<float>(param),
                                            static_cast<float>(param2));
    return py::make_tuple(s, g);
  }, py::arg("name"), py::arg("out"), py::arg("target"), py::arg("from_logits") = false,
     py::arg("act") = "linear", py::arg("scale") = 1.0, py::arg("sample_weight") = py::none(),
     py::arg("param") = 1.0, py::arg("param2") = 0.0);

  // Per-sample float32 losses (n,) of out (n, c) against labels (n) or targets (n, c).
  m.def("loss_per_sample", [](const std::string& name, py::array out, py::array target,
                              bool from_logits, double param, double param2) {
    const Loss l = loss_from_string(name);
    auto o = strict<float>(out, "out");
    if (o.ndim() != 2) throw std::invalid_argument("loss: out must be 2-D");
    const int64_t n = o.shape(0), c = o.shape(1);
    py::array_t<int32_t, py::array::c_style> labels;
    F32 t;
    if (loss_sparse(l)) {
      labels = strict<int32_t>(target, "labels");
      if (labels.size() != n) throw std::invalid_argument("loss: one label per row");
    } else {
      t = strict<float>(target, "target");
      if (t.size() != n * c) throw std::invalid_argument("loss: target must match out");
    }
    F32 per({n});
    loss_forward<float>(l, from_logits, o.data(), loss_sparse(l) ? labels.data() : nullptr,
                        loss_sparse(l) ? nullptr : t.data(), nullptr, n, c,
                        static_cast<float>(param), per.mutable_data(),
                        static_cast<float>(param2));
    return per;
  }, py::arg("name"), py::arg("out"), py::arg("target"), py::arg("from_logits") = false,
     py::arg("param") = 1.0, py::arg("param2") = 0.0);

  // Sum over rows of a metric of out (n, c) against labels (n) or targets (n, c);
  // sample weights (n) apply when given. per_row: the n values instead of their sum.
  m.def("metric_sum", [](const std::string& name, int64_t k, py::array out, py::array target,
                         py::object sample_weight, bool per_row, float threshold) -> py::object {
    MetricSpec spec{metric_from_string(name), k, !sample_weight.is_none(), threshold};
    if (k < 1) throw std::invalid_argument("metric k must be >= 1");
    auto o = strict<float>(out, "out");
    if (o.ndim() != 2) throw std::invalid_argument("metric: out must be 2-D");
    const int64_t n = o.shape(0), c = o.shape(1);
    py::array_t<int32_t, py::array::c_style> labels;
    F32 t, w;
    const bool sparse = metric_sparse(spec.kind) ||
                        (metric_takes_either(spec.kind) && target.dtype().kind() == 'i');
    if (sparse) {
      labels = strict<int32_t>(target, "labels");
      if (labels.size() != n) throw std::invalid_argument("metric: one label per row");
      for (int64_t i = 0; i < n && !metric_takes_either(spec.kind); ++i)
        if (labels.data()[i] < 0 || labels.data()[i] >= c)
          throw std::invalid_argument("metric: label " + std::to_string(labels.data()[i]) +
                                      " outside [0, " + std::to_string(c) + ")");
    } else {
      t = strict<float>(target, "target");
      if (t.size() != n * c) throw std::invalid_argument("metric: target must match out");
    }
    if (!sample_weight.is_none()) {
      w = strict<float>(sample_weight, "sample_weight");
      if (w.size() != n) throw std::invalid_argument("metric: one sample weight per row");
    }
    const int32_t* lp = sparse ? labels.data() : nullptr;
    const float* tp = sparse ? nullptr : t.data();
    const float* wp = sample_weight.is_none() ? nullptr : w.data();
    const int64_t width = metric_width(spec, c);
    if (width > 1) {  // the sums a metric's result is computed from
      if (per_row) throw std::invalid_argument("metric: per_row needs a mean metric");
      std::vector<double> sums(width, 0.0);
      {
        py::gil_scoped_release nogil;
        metric_add(spec, o.data(), lp, tp, wp, n, c, sums.data());
      }
      py::array_t<double> a(width);
      std::copy(sums.begin(), sums.end(), a.mutable_data());
      return std::move(a);
    }
    if (!per_row) return py::float_(metric_sum(spec, o.data(), lp, tp, wp, n, c));
    F32 values({n});
    for (int64_t i = 0; i < n; ++i)
      values.mutable_data()[i] = static_cast<float>(
          metric_sum(spec, o.data() + i * c, lp ? lp + i : nullptr, tp ? tp + i * c : nullptr,
                     wp ? wp + i : nullptr, 1, c));
    return std::move(values);
  }, py::arg("name"), py::arg("k"), py::arg("out"), py::arg("target"),
     py::arg("sample_weight") = py::none(), py::arg("per_row") = false,
     py::arg("threshold") = 0.5f);

  m.def("metric_width", [](const std::string& name, int64_t k, int64_t c) {
    return metric_width(MetricSpec{metric_from_string(name), k, false, 0.5f}, c);
  }, py::arg("name"), py::arg("k"), py::arg("c"));

  // Kernels, for tests: float32 runs the fast kernel, float64 the direct reference.
  m.def("conv2d_forward", [](py::array x, py::array w, py::object b, std::array<int64_t, 2> strides,
                             std::array<int64_t, 2> dilation, const std::string& padding,
                             const std::string& act) -> py::array {
    const Conv2DShape s = conv_shape_of(x, w, strides, dilation, padding);
    if (is_f64(x)) {
      auto xa = strict<double>(x, "x"), wa = strict<double>(w, "w");
      F64 ba = b.is_none() ? F64() : strict<double>(b, "b");
      F64 y({s.n, s.oh, s.ow, s.f});
      conv2d_forward_ref<double>(s, xa.data(), wa.data(), b.is_none() ? nullptr : ba.data(),
                                 y.mutable_data());
      act_forward<double>(act_from_string(act), y.data(), y.mutable_data(), s.n * s.oh * s.ow, s.f);
      return y;
    }
    auto xa = strict<float>(x, "x"), wa = strict<float>(w, "w");
    F32 ba = b.is_none() ? F32() : strict<float>(b, "b");
    if (!b.is_none() && ba.size() != s.f) throw std::invalid_argument("conv2d: bias must be (filters,)");
    F32 y({s.n, s.oh, s.ow, s.f});
    const Act a = act_from_string(act);
    py::gil_scoped_release nogil;
    conv2d_forward(s, xa.data(), wa.data(), b.is_none() ? nullptr : ba.data(), y.mutable_data(), a);
    return y;
  }, py::arg("x"), py::arg("w"), py::arg("b"), py::arg("strides"), py::arg("dilation"),
     py::arg("padding"), py::arg("act") = "linear");
  // (dx or None, dw, db) for dz, the gradient at the pre-activation.
  m.def("conv2d_backward", [](py::array x, py::array w, py::array dz, std::array<int64_t, 2> strides,
                              std::array<int64_t, 2> dilation, const std::string& padding,
                              bool need_dx) -> py::tuple {
    const Conv2DShape s = conv_shape_of(x, w, strides, dilation, padding);
    if (dz.ndim() != 4 || dz.shape(0) != s.n || dz.shape(1) != s.oh || dz.shape(2) != s.ow ||
        dz.shape(3) != s.f)
      throw std::invalid_argument("conv2d_backward: dz must be (n, oh, ow, filters)");
    if (is_f64(x)) {
      auto xa = strict<double>(x, "x"), wa = strict<double>(w, "w"), da = strict<double>(dz, "dz");
      F64 dx({s.n, s.h, s.w, s.c}), dw({s.kh, s.kw, s.c, s.f}), db({s.f});
      conv2d_backward_ref<double>(s, xa.data(), wa.data(), da.data(),
                                  need_dx ? dx.mutable_data() : nullptr, dw.mutable_data(),
                                  db.mutable_data());
      return py::make_tuple(need_dx ? py::object(dx) : py::none(), dw, db);
    }
    auto xa = strict<float>(x, "x"), wa = strict<float>(w, "w"), da = strict<float>(dz, "dz");
    F32 dx({s.n, s.h, s.w, s.c}), dw({s.kh, s.kw, s.c, s.f}), db({s.f});
    {
      py::gil_scoped_release nogil;
      conv2d_backward(s, xa.data(), wa.data(), da.data(), need_dx ? dx.mutable_data() : nullptr,
                      dw.mutable_data(), db.mutable_data());
    }
    return py::make_tuple(need_dx ? py::object(dx) : py::none(), dw, db);
  }, py::arg("x"), py::arg("w"), py::arg("dz"), py::arg("strides"), py::arg("dilation"),
     py::arg("padding"), py::arg("need_dx") = true);
  m.def("pool2d_forward", [](py::array x, bool max, std::array<int64_t, 2> pool,
                             std::array<int64_t, 2> strides, const std::string& padding) -> py::array {
    const auto d = nhwc(x, "pool2d");
    const Pool2DShape s = pool2d_shape(d[0], d[1], d[2], d[3], pool[0], pool[1], strides[0],
                                       strides[1], parse_padding(padding));
    if (is_f64(x)) {
      auto xa = strict<double>(x, "x");
      F64 y({s.n, s.oh, s.ow, s.c});
      pool2d_forward_ref<double>(s, max, xa.data(), y.mutable_data());
      return y;
    }
    auto xa = strict<float>(x, "x");
    F32 y({s.n, s.oh, s.ow, s.c});
    py::gil_scoped_release nogil;
    if (max) maxpool2d_forward(s, xa.data(), y.mutable_data(), nullptr);
    else avgpool2d_forward(s, xa.data(), y.mutable_data());
    return y;
  });
  m.def("pool2d_backward", [](py::array x, py::array dy, bool max, std::array<int64_t, 2> pool,
                              std::array<int64_t, 2> strides, const std::string& padding) -> py::array {
    const auto d = nhwc(x, "pool2d");
    const Pool2DShape s = pool2d_shape(d[0], d[1], d[2], d[3], pool[0], pool[1], strides[0],
                                       strides[1], parse_padding(padding));
    if (dy.ndim() != 4 || dy.shape(0) != s.n || dy.shape(1) != s.oh || dy.shape(2) != s.ow ||
        dy.shape(3) != s.c)
      throw std::invalid_argument("pool2d_backward: dy must be (n, oh, ow, c)");
    if (is_f64(x)) {
      auto xa = strict<double>(x, "x"), da = strict<double>(dy, "dy");
      F64 dx({s.n, s.h, s.w, s.c});
      pool2d_backward_ref<double>(s, max, xa.data(), da.data(), dx.mutable_data());
      return dx;
    }
    auto xa = strict<float>(x, "x"), da = strict<float>(dy, "dy");
    F32 dx({s.n, s.h, s.w, s.c});
    py::gil_scoped_release nogil;
    if (max) {
      std::vector<int32_t> arg(s.n * s.oh * s.ow * s.c);
      std::vector<float> y(arg.size());
      maxpool2d_forward(s, xa.data(), y.data(), arg.data());
      maxpool2d_backward(s, da.data(), arg.data(), dx.mutable_data());
    } else {
      avgpool2d_backward(s, da.data(), dx.mutable_data());
    }
    return dx;
  });

  py::class_<Variable, std::shared_ptr<Variable>>(m, "Variable")
      .def(py::init<std::vector<int64_t>>(), py::arg("shape"))
      .def_property_readonly("shape", &Variable::shape)
      // A numpy view of the storage that keeps it alive.
      .def("array", [](py::object self) {
        Variable& v = self.cast<Variable&>();
        return view(v.data(), v.shape(), self);
      });

  py::class_<Optimizer, std::shared_ptr<Optimizer>>(m, "Optimizer")
      .def(py::init([](const std::string& kind, float momentum, bool nesterov, float beta_1,
                       float beta_2, bool amsgrad, float epsilon, float rho, bool centered,
                       float initial_accumulator_value, float weight_decay, float clipnorm,
                       float clipvalue, float global_clipnorm, float lr_power, float l1,
                       float l2, float l2_shrinkage, float ftrl_beta,
                       int64_t accumulation_steps, bool use_ema, float ema_momentum,
                       int64_t ema_overwrite_frequency) {
        OptimizerConfig c;
        c.accumulation_steps = accumulation_steps;
        c.use_ema = use_ema;
        c.ema_momentum = ema_momentum;
        c.ema_overwrite_frequency = ema_overwrite_frequency;
        if (kind == "sgd") c.kind = Opt::SGD;
        else if (kind == "adam") c.kind = Opt::Adam;
        else if (kind == "rmsprop") c.kind = Opt::RMSprop;
        else if (kind == "adagrad") c.kind = Opt::Adagrad;
        else if (kind == "adamax") c.kind = Opt::Adamax;
        else if (kind == "nadam") c.kind = Opt::Nadam;
        else if (kind == "lion") c.kind = Opt::Lion;
        else if (kind == "adadelta") c.kind = Opt::Adadelta;
        else if (kind == "ftrl") c.kind = Opt::Ftrl;
        else throw std::invalid_argument("Unknown optimizer kind: '" + kind + "'");
        c.momentum = momentum; c.nesterov = nesterov;
        c.beta_1 = beta_1; c.beta_2 = beta_2; c.amsgrad = amsgrad; c.epsilon = epsilon;
        c.rho = rho; c.centered = centered;
        c.initial_accumulator_value = initial_accumulator_value;
        c.weight_decay = weight_decay; c.clipnorm = clipnorm; c.clipvalue = clipvalue;
        c.global_clipnorm = global_clipnorm;
        c.lr_power = lr_power; c.l1 = l1; c.l2 = l2; c.l2_shrinkage = l2_shrinkage;
        c.ftrl_beta = ftrl_beta;
        return std::make_shared<Optimizer>(c);
      }), py::arg("kind"), py::arg("momentum") = 0.f, py::arg("nesterov") = false,
         py::arg("beta_1") = 0.9f, py::arg("beta_2") = 0.999f, py::arg("amsgrad") = false,
         py::arg("epsilon") = 1e-7f, py::arg("rho") = 0.9f, py::arg("centered") = false,
         py::arg("initial_accumulator_value") = 0.1f, py::arg("weight_decay") = 0.f,
         py::arg("clipnorm") = 0.f, py::arg("clipvalue") = 0.f, py::arg("global_clipnorm") = 0.f,
         py::arg("lr_power") = -0.5f, py::arg("l1") = 0.f, py::arg("l2") = 0.f,
         py::arg("l2_shrinkage") = 0.f, py::arg("ftrl_beta") = 0.f,
         py::arg("accumulation_steps") = 0, py::arg("use_ema") = false,
         py::arg("ema_momentum") = 0.99f, py::arg("ema_overwrite_frequency") = 0)
      // One update of the given variables by the given dense gradients (the
      // optimizer's apply_gradients), as a training step applies them.
      .def("apply_dense", [](Optimizer& opt, const std::vector<std::shared_ptr<Variable>>& vars,
                             const std::vector<py::object>& grads,
                             const std::vector<bool>& decay, float lr) {
        if (grads.size() != vars.size() || decay.size() != vars.size())
          throw std::invalid_argument("apply_dense: one gradient and flag per variable");
        std::vector<F32> keep;
        std::vector<OptVar> ov;
        for (size_t k = 0; k < vars.size(); ++k) {
          auto g = strict<float>(grads[k], "gradient");
          if (g.size() != vars[k]->size())
            throw std::invalid_argument("apply_dense: a gradient does not match its variable");
          OptVar v;
          v.var = vars[k].get();
          v.grad = g.data();
          v.decay = decay[k];
          v.slots = &opt.slots_for(vars[k]);
          ov.push_back(v);
          keep.push_back(g);
        }
        py::gil_scoped_release nogil;
        opt.apply(ov, lr);
      }, py::arg("variables"), py::arg("gradients"), py::arg("decay"), py::arg("lr"))
      .def_readwrite("iterations", &Optimizer::iterations)
      .def_property_readonly("updates", &Optimizer::updates)
      .def_property_readonly("num_slots", &Optimizer::num_slots)
      .def_property_readonly("rule_slots", &Optimizer::rule_slots)
      .def_property_readonly("ema_slot", &Optimizer::ema_slot)
      .def_property_readonly("accumulator_slot", &Optimizer::accumulator_slot)
      // Views of v's slots (ember's order), empty before v's first update unless
      // create is true (then they are made at their initial value).
      .def("slots", [](py::object self, const std::shared_ptr<Variable>& v, bool create) {
        Optimizer& o = self.cast<Optimizer&>();
        py::list out;
        auto* s = create ? &o.slots_for(v) : o.find_slots(v.get());
        if (s)
          for (auto& b : *s) out.append(view(b.data(), v->shape(), self));
        return out;
      }, py::arg("variable"), py::arg("create") = false);

  // A traced train_step: for each phase (graph, x, y, lr) in order, one training step of
  // that graph on its whole arrays (x and y: lists), all with the GIL released; returns
  // each phase's outputs after its step.
  m.def("train_steps", [](const py::list& phases) {
    std::vector<Graph*> graphs;
    std::vector<Batch> batches;
    std::vector<float> lrs;
    for (const py::handle& p : phases) {
      const py::tuple t = py::reinterpret_borrow<py::tuple>(p);
      if (t.size() != 4) throw std::invalid_argument("train_steps: phases are (graph, x, y, lr)");
      Graph& g = t[0].cast<Graph&>();
      Batch b = make_batch(g, t[1], t[2], py::none(), py::none(), 0, 0, true);
      b.n = b.rows;
      graphs.push_back(&g);
      batches.push_back(b);
      lrs.push_back(t[3].cast<float>());
    }
    {
      py::gil_scoped_release nogil;
      for (size_t i = 0; i < graphs.size(); ++i) graphs[i]->train_step(batches[i], lrs[i]);
    }
    py::list out;
    for (Graph* g : graphs) {
      py::list outs;
      for (int o = 0; o < g->num_outputs(); ++o) {
        std::vector<int64_t> shape{g->trained_rows()};
        for (int64_t d : g->output_shape(o)) shape.push_back(d);
        F32 a(shape);
        std::copy_n(g->trained_output(o), g->trained_rows() * g->output_size(o),
                    a.mutable_data());
        outs.append(a);
      }
      out.append(outs);
    }
    return out;
  }, py::arg("phases"));

  py::class_<Graph, std::shared_ptr<Graph>>(m, "Graph")
      .def(py::init<>())
      .def("add_input", &Graph::add_input, py::arg("shape"))
      .def("add_dense", [](Graph& g, int x, std::shared_ptr<Variable> kernel,
                           std::shared_ptr<Variable> bias, const std::string& act) {
        return g.add_dense(x, kernel, bias, act_from_string(act));
      }, py::arg("x"), py::arg("kernel"), py::arg("bias").none(true), py::arg("act"))
      .def("add_activation", [](Graph& g, int x, const std::string& act, float alpha) {
        return g.add_activation(x, act_from_string(act), alpha);
      }, py::arg("x"), py::arg("act"), py::arg("alpha") = kDefaultAlpha)
      .def("add_conv2d", [](Graph& g, int x, std::shared_ptr<Variable> kernel,
                            std::shared_ptr<Variable> bias, std::array<int64_t, 2> strides,
                            std::array<int64_t, 2> dilation, const std::string& padding,
                            const std::string& act, int64_t groups) {
        // 'causal' (Conv1D, as a 1 x k Conv2D): all the padding before the steps.
        const bool causal = padding == "causal";
        return g.add_conv2d(x, kernel, bias, strides[0], strides[1], dilation[0], dilation[1],
                            !causal && parse_padding(padding), act_from_string(act), causal,
                            groups);
      }, py::arg("x"), py::arg("kernel"), py::arg("bias").none(true), py::arg("strides"),
         py::arg("dilation"), py::arg("padding"), py::arg("act"), py::arg("groups") = 1)
      .def("add_conv2d_transpose", [](Graph& g, int x, std::shared_ptr<Variable> kernel,
                                      std::shared_ptr<Variable> bias,
                                      std::array<int64_t, 2> strides,
                                      std::array<int64_t, 2> dilation,
                                      const std::string& padding, const std::string& act,
                                      std::array<int64_t, 2> output_padding) {
        return g.add_conv2d_transpose(x, kernel, bias, strides[0], strides[1], dilation[0],
                                      dilation[1], parse_padding(padding), act_from_string(act),
                                      output_padding[0], output_padding[1]);
      }, py::arg("x"), py::arg("kernel"), py::arg("bias").none(true), py::arg("strides"),
         py::arg("dilation"), py::arg("padding"), py::arg("act"),
         py::arg("output_padding") = std::array<int64_t, 2>{-1, -1})
      .def("add_depthwise", [](Graph& g, int x, std::shared_ptr<Variable> kernel,
                               std::shared_ptr<Variable> bias, std::array<int64_t, 2> strides,
                               std::array<int64_t, 2> dilation, const std::string& padding,
                               const std::string& act) {
        return g.add_depthwise(x, kernel, bias, strides[0], strides[1], dilation[0],
                               dilation[1], parse_padding(padding), act_from_string(act));
      }, py::arg("x"), py::arg("kernel"), py::arg("bias").none(true), py::arg("strides"),
         py::arg("dilation"), py::arg("padding"), py::arg("act"))
      .def("add_embedding", &Graph::add_embedding, py::arg("ids"), py::arg("table"),
           py::arg("mask_zero"))
      .def("add_masking", &Graph::add_masking, py::arg("x"), py::arg("mask_value"))
      .def("add_repeat", &Graph::add_repeat, py::arg("x"), py::arg("times"))
      .def("add_rnn", [](Graph& g, int x, const std::string& cell, int64_t units,
                         const std::string& activation, const std::string& recurrent_activation,
                         bool return_sequences, bool go_backwards, bool reverse_output,
                         bool zero_output_for_mask, std::shared_ptr<Variable> kernel,
                         std::shared_ptr<Variable> recurrent_kernel,
                         std::shared_ptr<Variable> bias, float recurrent_dropout,
                         uint64_t seed, std::vector<int> initial_state, bool return_state,
                         bool reset_after, bool stateful, uint64_t state_key) {
        RnnSpec s;
        s.stateful = stateful;
        s.state_key = state_key;
        s.recurrent_dropout = recurrent_dropout;
        s.seed = seed;
        if (cell == "simple_rnn") s.cell = RnnCell::Simple;
        else if (cell == "lstm") s.cell = RnnCell::LSTM;
        else if (cell == "gru") s.cell = RnnCell::GRU;
        else throw std::invalid_argument("unknown recurrent cell " + cell);
        s.units = units;
        s.act = act_from_string(activation);
        s.rec_act = act_from_string(recurrent_activation);
        s.return_sequences = return_sequences;
        s.go_backwards = go_backwards;
        s.reverse_output = reverse_output;
        s.zero_output_for_mask = zero_output_for_mask;
        s.return_state = return_state;
        s.reset_after = reset_after;
        return g.add_rnn(x, s, kernel, recurrent_kernel, bias, initial_state);
      }, py::arg("x"), py::arg("cell"), py::arg("units"), py::arg("activation"),
         py::arg("recurrent_activation"), py::arg("return_sequences"), py::arg("go_backwards"),
         py::arg("reverse_output"), py::arg("zero_output_for_mask"), py::arg("kernel"),
         py::arg("recurrent_kernel"), py::arg("bias"), py::arg("recurrent_dropout") = 0.f,
         py::arg("seed") = 0, py::arg("initial_state") = std::vector<int>{},
         py::arg("return_state") = false, py::arg("reset_after") = true,
         py::arg("stateful") = false, py::arg("state_key") = 0)
      .def("reset_rnn_states", &Graph::reset_rnn_states, py::arg("key") = 0)
      .def("add_pool2d", [](Graph& g, int x, bool max, std::array<int64_t, 2> pool,
                            std::array<int64_t, 2> strides, const std::string& padding) {
        return g.add_pool2d(x, max, pool[0], pool[1], strides[0], strides[1],
                            parse_padding(padding));
      }, py::arg("x"), py::arg("max"), py::arg("pool"), py::arg("strides"), py::arg("padding"))
      .def("add_global_pool", &Graph::add_global_pool, py::arg("x"), py::arg("max"),
           py::arg("spatial_dims"), py::arg("keepdims"))
      .def("add_dropout", [](Graph& g, int x, float rate, uint64_t seed, const std::string& kind) {
        NoiseKind k;
        if (kind == "dropout") k = NoiseKind::Dropout;
        else if (kind == "spatial") k = NoiseKind::Spatial;
        else if (kind == "gaussian_dropout") k = NoiseKind::GaussianDropout;
        else if (kind == "gaussian_noise") k = NoiseKind::GaussianNoise;
        else throw std::invalid_argument("Unknown noise kind: '" + kind + "'");
        return g.add_dropout(x, rate, seed, k);
      }, py::arg("x"), py::arg("rate"), py::arg("seed"), py::arg("kind") = "dropout")
      .def("add_batch_norm", &Graph::add_batch_norm, py::arg("x"), py::arg("gamma").none(true),
           py::arg("beta").none(true), py::arg("moving_mean"), py::arg("moving_variance"),
           py::arg("epsilon"), py::arg("momentum"))
      .def("add_reshape", &Graph::add_reshape)
      .def("add_frames", &Graph::add_frames, py::arg("x"), py::arg("batch") = false)
      .def("add_unframes", &Graph::add_unframes, py::arg("y"), py::arg("x"))
      .def("add_group_norm", &Graph::add_group_norm, py::arg("x"), py::arg("groups"),
           py::arg("gamma").none(true), py::arg("beta").none(true), py::arg("epsilon"))
      .def("add_permute", &Graph::add_permute, py::arg("x"), py::arg("perm"))
      .def("add_prelu", &Graph::add_prelu, py::arg("x"), py::arg("alpha"))
      .def("add_upsample", &Graph::add_upsample, py::arg("x"), py::arg("sh"), py::arg("sw"))
      .def("add_resize", &Graph::add_resize, py::arg("x"), py::arg("height"), py::arg("width"),
           py::arg("nearest"), py::arg("crop_to_aspect"))
      .def("add_augment", [](Graph& g, int x, const std::string& kind, bool horizontal,
                             bool vertical, std::array<float, 4> ranges, bool same,
                             const std::string& fill, float fill_value, bool nearest,
                             std::array<float, 2> value_range, uint64_t seed) {
        AugmentSpec s;
        if (kind == "flip") s.kind = AugmentKind::Flip;
        else if (kind == "rotation") s.kind = AugmentKind::Rotation;
        else if (kind == "zoom") s.kind = AugmentKind::Zoom;
        else if (kind == "translation") s.kind = AugmentKind::Translation;
        else if (kind == "contrast") s.kind = AugmentKind::Contrast;
        else throw std::invalid_argument("Unknown augmentation '" + kind + "'");
        if (fill == "reflect") s.fill = FillMode::Reflect;
        else if (fill == "wrap") s.fill = FillMode::Wrap;
        else if (fill == "constant") s.fill = FillMode::Constant;
        else if (fill == "nearest") s.fill = FillMode::Nearest;
        else throw std::invalid_argument("Unknown fill_mode '" + fill + "'");
        s.horizontal = horizontal;
        s.vertical = vertical;
        s.a0 = ranges[0];
        s.a1 = ranges[1];
        s.b0 = ranges[2];
        s.b1 = ranges[3];
        s.b_same = same;
        s.fill_value = fill_value;
        s.nearest = nearest;
        s.lo = value_range[0];
        s.hi = value_range[1];
        s.seed = seed;
        return g.add_augment(x, s);
      }, py::arg("x"), py::arg("kind"), py::arg("horizontal") = true, py::arg("vertical") = true,
         py::arg("ranges") = std::array<float, 4>{0.f, 0.f, 0.f, 0.f}, py::arg("same") = false,
         py::arg("fill_mode") = "reflect", py::arg("fill_value") = 0.f,
         py::arg("nearest") = false, py::arg("value_range") = std::array<float, 2>{0.f, 255.f},
         py::arg("seed") = 0)
      .def("add_mode_select", &Graph::add_mode_select, py::arg("a"), py::arg("b"))
      .def("add_random", &Graph::add_random, py::arg("shape"), py::arg("normal"), py::arg("a"),
           py::arg("b"), py::arg("seed"), py::arg("stream"), py::arg("advance"),
           py::arg("like") = -1)
      .def("add_random_crop", &Graph::add_random_crop, py::arg("x"), py::arg("height"),
           py::arg("width"), py::arg("seed"))
      .def("add_pad_crop", &Graph::add_pad_crop, py::arg("x"), py::arg("top"),
           py::arg("bottom"), py::arg("left"), py::arg("right"))
      .def("add_activity_penalty", &Graph::add_activity_penalty, py::arg("x"), py::arg("l1"),
           py::arg("l2"))
      .def("add_normalize", &Graph::add_normalize, py::arg("x"), py::arg("mean"),
           py::arg("variance"), py::arg("invert"))
      .def("add_layer_norm", &Graph::add_layer_norm, py::arg("x"), py::arg("gamma").none(true),
           py::arg("beta").none(true), py::arg("epsilon"))
      .def("add_merge", [](Graph& g, const std::string& op, const std::vector<int>& xs) {
        MergeOp m;
        if (op == "add") m = MergeOp::Add;
        else if (op == "subtract") m = MergeOp::Subtract;
        else if (op == "multiply") m = MergeOp::Multiply;
        else if (op == "average") m = MergeOp::Average;
        else if (op == "maximum") m = MergeOp::Maximum;
        else if (op == "minimum") m = MergeOp::Minimum;
        else throw std::invalid_argument("Unknown merge: '" + op + "'");
        return g.add_merge(m, xs);
      })
      .def("add_concatenate", &Graph::add_concatenate, py::arg("xs"), py::arg("axis"))
      .def("add_dot", &Graph::add_dot, py::arg("a"), py::arg("b"), py::arg("normalize"))
      .def("add_unary", [](Graph& g, int x, const std::string& op, float a, float b) {
        static const std::pair<const char*, UnaryOp> names[] = {
            {"affine", UnaryOp::Affine}, {"exp", UnaryOp::Exp}, {"log", UnaryOp::Log},
            {"sqrt", UnaryOp::Sqrt}, {"square", UnaryOp::Square}, {"abs", UnaryOp::Abs},
            {"sign", UnaryOp::Sign}, {"clip", UnaryOp::Clip}, {"pow", UnaryOp::Pow},
            {"rdiv", UnaryOp::RDiv}, {"floor", UnaryOp::Floor}, {"round", UnaryOp::Round},
            {"trunc", UnaryOp::Trunc}, {"log1p", UnaryOp::Log1p}, {"expm1", UnaryOp::Expm1},
            {"sin", UnaryOp::Sin}, {"cos", UnaryOp::Cos}};
        for (const auto& [name, code] : names)
          if (op == name) return g.add_unary(x, code, a, b);
        throw std::invalid_argument("Unknown unary op: '" + op + "'");
      }, py::arg("x"), py::arg("op"), py::arg("a") = 0.f, py::arg("b") = 0.f)
      .def("add_binary", [](Graph& g, const std::string& op, const py::object& a,
                            std::vector<int32_t> a_map, const py::object& b,
                            std::vector<int32_t> b_map, std::vector<int64_t> out_shape) {
        static const std::pair<const char*, BinaryOp> names[] = {
            {"add", BinaryOp::Add}, {"subtract", BinaryOp::Subtract},
            {"multiply", BinaryOp::Multiply}, {"divide", BinaryOp::Divide},
            {"power", BinaryOp::Power}, {"maximum", BinaryOp::Maximum},
            {"minimum", BinaryOp::Minimum}, {"greater", BinaryOp::Greater},
            {"greater_equal", BinaryOp::GreaterEqual}, {"less", BinaryOp::Less},
            {"less_equal", BinaryOp::LessEqual}, {"equal", BinaryOp::Equal},
            {"not_equal", BinaryOp::NotEqual}};
        // Each side: a value id or a Variable.
        auto side = [](const py::object& o, int& v, std::shared_ptr<Variable>& var) {
          if (py::isinstance<Variable>(o)) var = o.cast<std::shared_ptr<Variable>>();
          else v = o.cast<int>();
        };
        int av = -1, bv = -1;
        std::shared_ptr<Variable> avar, bvar;
        side(a, av, avar);
        side(b, bv, bvar);
        for (const auto& [name, code] : names)
          if (op == name)
            return g.add_binary(code, av, avar, std::move(a_map), bv, bvar, std::move(b_map),
                                std::move(out_shape));
        throw std::invalid_argument("Unknown binary op: '" + op + "'");
      }, py::arg("op"), py::arg("a"), py::arg("a_map"), py::arg("b"), py::arg("b_map"),
         py::arg("out_shape"))
      .def("add_reduce", [](Graph& g, int x, const std::string& op, std::vector<int32_t> map,
                            std::vector<int32_t> pos, std::vector<int64_t> out_shape) {
        static const std::pair<const char*, ReduceOp> names[] = {
            {"sum", ReduceOp::Sum}, {"mean", ReduceOp::Mean}, {"max", ReduceOp::Max},
            {"min", ReduceOp::Min}, {"argmax", ReduceOp::ArgMax}, {"argmin", ReduceOp::ArgMin}};
        for (const auto& [name, code] : names)
          if (op == name)
            return g.add_reduce(x, code, std::move(map), std::move(pos), std::move(out_shape));
        throw std::invalid_argument("Unknown reduction: '" + op + "'");
      }, py::arg("x"), py::arg("op"), py::arg("map"), py::arg("pos"), py::arg("out_shape"))
      .def("add_gather", &Graph::add_gather, py::arg("x"), py::arg("map"), py::arg("out_shape"))
      .def("add_matmul", &Graph::add_matmul, py::arg("a"), py::arg("b"))
      .def("add_variable", &Graph::add_variable, py::arg("variable"))
      .def("add_stop_gradient", &Graph::add_stop_gradient, py::arg("x"))
      .def("add_loss_term", &Graph::add_loss_term, py::arg("value"), py::arg("sum"))
      .def("add_derived", &Graph::add_derived, py::arg("program"), py::arg("out"))
      .def("set_outputs", &Graph::set_outputs)
      .def("set_inference_only", &Graph::set_inference_only)
      .def("value_shape", &Graph::value_shape)
      .def_property_readonly("num_values", &Graph::num_values)
      .def_property_readonly("input_shapes", [](const Graph& g) {
        std::vector<std::vector<int64_t>> r;
        for (int i = 0; i < g.num_inputs(); ++i) r.push_back(g.input_shape(i));
        return r;
      })
      .def_property_readonly("output_shapes", [](const Graph& g) {
        std::vector<std::vector<int64_t>> r;
        for (int o = 0; o < g.num_outputs(); ++o) r.push_back(g.output_shape(o));
        return r;
      })
      // The loss (or None) and metrics [(name, k, weighted, threshold)] of output o.
      .def("set_output", [](Graph& g, int o, const py::object& loss, bool from_logits,
                            float param, float weight,
                            const std::vector<std::tuple<std::string, int64_t, bool, float>>& metrics,
                            bool per_position, const py::object& ignore_class, float param2,
                            bool whole_batch) {
        OutputSpec s;
        s.per_position = per_position;
        s.param2 = param2;
        s.whole_batch = whole_batch;
        if (!ignore_class.is_none()) {
          s.ignore = true;
          s.ignore_class = ignore_class.cast<int32_t>();
        }
        if (!loss.is_none()) {
          s.has_loss = true;
          const std::string name = loss.cast<std::string>();
          if (name == "external") s.external = true;  // gradient taping
          else s.loss = loss_from_string(name);
        }
        s.from_logits = from_logits;
        s.param = param;
        s.weight = weight;
        for (const auto& [name, k, weighted, threshold] : metrics) {
          if (k < 1) throw std::invalid_argument("metric k must be >= 1. Received: k=" +
                                                 std::to_string(k));
          s.metrics.push_back(MetricSpec{metric_from_string(name), k, weighted, threshold});
        }
        g.set_output_spec(o, s);
      }, py::arg("o"), py::arg("loss"), py::arg("from_logits") = false, py::arg("param") = 1.f,
         py::arg("weight") = 1.f, py::arg("metrics") = std::vector<std::tuple<std::string, int64_t, bool, float>>{},
         py::arg("per_position") = false, py::arg("ignore_class") = py::none(),
         py::arg("param2") = 0.f, py::arg("whole_batch") = false)
      .def("output_has_mask", &Graph::output_has_mask)
      .def("set_optimizer", &Graph::set_optimizer)
      .def_property_readonly("variables", &Graph::variables)
      .def("set_variable_flags", &Graph::set_variable_flags, py::arg("trainable"),
           py::arg("decay"))
      .def("set_variable_penalties", &Graph::set_variable_penalties, py::arg("l1"),
           py::arg("l2"))
      // [(kind or None, rows, min_value, max_value, rate)] per variable.
      .def("set_variable_constraints", [](Graph& g, const std::vector<std::tuple<
               std::string, int64_t, float, float, float>>& specs) {
        std::vector<Constraint> cs;
        for (const auto& [kind, rows, lo, hi, rate] : specs) {
          Constraint c;
          if (kind == "max_norm") c.kind = ConstraintKind::MaxNorm;
          else if (kind == "non_neg") c.kind = ConstraintKind::NonNeg;
          else if (kind == "unit_norm") c.kind = ConstraintKind::UnitNorm;
          else if (kind == "min_max_norm") c.kind = ConstraintKind::MinMaxNorm;
          else if (!kind.empty()) throw std::invalid_argument("Unknown constraint: " + kind);
          c.rows = rows;
          c.min_value = lo;
          c.max_value = hi;
          c.rate = rate;
          cs.push_back(c);
        }
        g.set_variable_constraints(cs);
      })
      .def_property_readonly("allocations", &Graph::allocations)
      .def_property_readonly("planned_rows", &Graph::planned_rows)
      .def_property_readonly("fusions", &Graph::fusions)
      .def_property_readonly("inference_floats_per_sample", &Graph::inference_floats_per_sample)
      .def_property_readonly("training_floats_per_sample", &Graph::training_floats_per_sample)
      .def("train_step", [](Graph& g, py::object x, py::object y, py::object sw, py::object idx,
                            int64_t start, int64_t n, float lr) {
        Batch b = make_batch(g, x, y, sw, idx, start, n, true);
        StepResult r;
        {
          py::gil_scoped_release nogil;
          r = g.train_step(b, lr);
        }
        return result_tuple(r);
      }, py::arg("x"), py::arg("y"), py::arg("sample_weight") = py::none(),
         py::arg("indices") = py::none(), py::arg("start") = 0, py::arg("n") = 0,
         py::arg("lr") = 0.f)
      .def("test_step", [](Graph& g, py::object x, py::object y, py::object sw, py::object idx,
                           int64_t start, int64_t n) {
        Batch b = make_batch(g, x, y, sw, idx, start, n, true);
        StepResult r;
        {
          py::gil_scoped_release nogil;
          r = g.test_step(b);
        }
        return result_tuple(r);
      }, py::arg("x"), py::arg("y"), py::arg("sample_weight") = py::none(),
         py::arg("indices") = py::none(), py::arg("start") = 0, py::arg("n") = 0)
      // Writes rows [start, start+n) of the predictions into out[o][start:start+n] for
      // each output (x and out: an array, or a list of them).
      // Gradient taping: (token, outputs) of a forward in the training plan.
      .def("tape_forward", [](Graph& g, py::object x, bool training, uint64_t step) {
        Batch b = make_batch(g, x, py::none(), py::none(), py::none(), 0, 0, false);
        b.n = b.rows;
        py::list outs;
        std::vector<float*> dst;
        for (int o = 0; o < g.num_outputs(); ++o) {
          std::vector<int64_t> shape{b.n};
          for (int64_t d : g.output_shape(o)) shape.push_back(d);
          F32 a(shape);
          dst.push_back(a.mutable_data());
          outs.append(a);
        }
        uint64_t token;
        {
          py::gil_scoped_release nogil;
          token = g.tape_forward(b, training, step, dst);
        }
        return py::make_tuple(token, outs);
      }, py::arg("x"), py::arg("training"), py::arg("step"))
      // The inputs' gradients (None where not wanted) for the outputs' gradients dy.
      .def("tape_backward", [](Graph& g, py::object x, py::object dy, bool training,
                               uint64_t step, uint64_t token, const std::vector<bool>& wanted) {
        Batch b = make_batch(g, x, dy, py::none(), py::none(), 0, 0, true);
        b.n = b.rows;
        py::list grads;
        std::vector<float*> dst;
        for (int i = 0; i < g.num_inputs(); ++i) {
          if (i < static_cast<int>(wanted.size()) && wanted[i]) {
            std::vector<int64_t> shape{b.n};
            for (int64_t d : g.input_shape(i)) shape.push_back(d);
            F32 a(shape);
            dst.push_back(a.mutable_data());
            grads.append(a);
          } else {
            dst.push_back(nullptr);
            grads.append(py::none());
          }
        }
        {
          py::gil_scoped_release nogil;
          g.tape_backward(b, training, step, token, dst);
        }
        return grads;
      }, py::arg("x"), py::arg("dy"), py::arg("training"), py::arg("step"), py::arg("token"),
         py::arg("wanted"))
      .def("variable_gradient", [](const Graph& g, int k) -> py::object {
        const FloatBuffer* f = g.variable_gradient(k);
        if (!f) return py::none();
        F32 a(g.variables().at(k)->shape());
        std::memcpy(a.mutable_data(), f->data(), sizeof(float) * f->size());
        return std::move(a);
      }, py::arg("k"))
      .def("set_input_gradients", &Graph::set_input_gradients, py::arg("wanted"))
      .def("predict", [](Graph& g, py::object x, py::object out, int64_t start, int64_t n) {
        Batch b = make_batch(g, x, py::none(), py::none(), py::none(), start, n, false);
        py::list ol = as_list(out);
        if (static_cast<int>(ol.size()) != g.num_outputs())
          throw std::invalid_argument("predict: one output array per model output");
        std::vector<float*> dst;
        for (int o = 0; o < g.num_outputs(); ++o) {
          auto a = strict<float>(ol[o], "out", true);
          if (a.size() != b.rows * g.output_size(o))
            throw std::invalid_argument("predict: out has the wrong size");
          dst.push_back(a.mutable_data() + start * g.output_size(o));
        }
        py::gil_scoped_release nogil;
        g.predict(b, dst);
      }, py::arg("x"), py::arg("out"), py::arg("start"), py::arg("n"))
      // Model.predict's fast path in one call, for one input and one output: when x is a
      // float32 C-contiguous array of 1 to max_rows samples of the input shape, all
      // finite, returns the outputs as a new array; otherwise None (the caller takes the
      // checked path, which raises).
      .def("predict_fast", [](Graph& g, py::handle h, int64_t max_rows) -> py::object {
        if (g.num_inputs() != 1 || g.num_outputs() != 1 || !F32::check_(h)) return py::none();
        auto x = py::reinterpret_borrow<F32>(h);
        const auto& in = g.input_shape(0);
        const int64_t n = x.ndim() > 0 ? x.shape(0) : 0;
        if (n < 1 || n > max_rows || x.ndim() != static_cast<py::ssize_t>(in.size()) + 1)
          return py::none();
        for (size_t d = 0; d < in.size(); ++d)
          if (x.shape(d + 1) != in[d]) return py::none();
        std::vector<int64_t> shape{n};
        for (int64_t d : g.output_shape(0)) shape.push_back(d);
        F32 out(shape);
        Batch b;
        b.x.push_back(x.data());
        b.rows = b.n = n;
        std::vector<float*> dst{out.mutable_data()};
        bool finite;
        {
          py::gil_scoped_release nogil;
          finite = first_nonfinite(b.x[0], n * g.input_size(0)) < 0;
          if (finite) g.predict(b, dst);
        }
        if (!finite) return py::none();
        return std::move(out);
      }, py::arg("x"), py::arg("max_rows"));
}
