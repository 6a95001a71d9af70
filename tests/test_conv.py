"""Conv2D and pooling: float64 finite-difference checks of the reference kernels, the
float32 kernels against them, Keras's output shapes, PyTorch as an oracle (forward,
backward, a whole training step), the layer contract and bad input."""
import numpy as np
import pytest

import ember
from ember import _core, layers
from gradcheck import assert_close, numeric_grad
from oracles import keras_or_skip, torch_or_skip

rng = np.random.default_rng(0)

# (h, w, c, kernel, filters, strides, dilation, padding)
CONV_CASES = [
    ((5, 6, 2), (3, 3), 3, (1, 1), (1, 1), "valid"),
    ((5, 6, 2), (3, 2), 3, (2, 2), (1, 1), "same"),
    ((6, 5, 3), (3, 3), 2, (1, 1), (2, 2), "same"),
    ((7, 7, 1), (3, 3), 2, (1, 1), (2, 2), "valid"),
    ((4, 5, 3), (1, 1), 4, (1, 1), (1, 1), "valid"),
    ((5, 4, 3), (1, 1), 2, (2, 2), (1, 1), "same"),
    ((3, 3, 2), (3, 3), 2, (1, 1), (1, 1), "valid"),  # kernel = input
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients(case):
    (h, w, c), k, f, st, dil, pad = case
    x = rng.normal(size=(2, h, w, c))
    kern = rng.normal(size=k + (c, f)) * 0.5
    b = rng.normal(size=f)
    y = _core.conv2d_forward(x, kern, b, st, dil, pad)
    r = rng.normal(size=y.shape)
    fn = lambda: float(np.sum(_core.conv2d_forward(x, kern, b, st, dil, pad) * r))
    dx, dw, db = _core.conv2d_backward(x, kern, r, st, dil, pad)
    assert_close(dx, numeric_grad(fn, x), what="dx")
    assert_close(dw, numeric_grad(fn, kern), what="dw")
    assert_close(db, numeric_grad(fn, b), what="db")


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_float32_matches_reference(case):
    (h, w, c), k, f, st, dil, pad = case
    x, kern, b = rng.normal(size=(3, h, w, c)), rng.normal(size=k + (c, f)), rng.normal(size=f)
    f32 = lambda a: a.astype(np.float32)
    ref = _core.conv2d_forward(x, kern, b, st, dil, pad)
    np.testing.assert_allclose(_core.conv2d_forward(f32(x), f32(kern), f32(b), st, dil, pad),
                               ref, rtol=1e-4, atol=1e-5)
    dz = rng.normal(size=ref.shape)
    for fast, slow in zip(_core.conv2d_backward(f32(x), f32(kern), f32(dz), st, dil, pad),
                          _core.conv2d_backward(x, kern, dz, st, dil, pad)):
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


POOL_CASES = [((6, 6, 2), (2, 2), (2, 2), "valid"), ((5, 7, 3), (2, 2), (2, 2), "valid"),
              ((5, 7, 3), (3, 3), (2, 2), "same"), ((5, 5, 2), (3, 3), (1, 1), "same"),
              ((6, 5, 2), (3, 2), (1, 2), "valid")]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d_gradients_and_float32(case, kind):
    (h, w, c), p, s, pad = case
    mx = kind == "max"
    x = rng.permutation(2 * h * w * c).reshape(2, h, w, c) * 0.1  # distinct: no ties
    y = _core.pool2d_forward(x, mx, p, s, pad)
    r = rng.normal(size=y.shape)
    fn = lambda: float(np.sum(_core.pool2d_forward(x, mx, p, s, pad) * r))
    dx = _core.pool2d_backward(x, r, mx, p, s, pad)
    assert_close(dx, numeric_grad(fn, x, eps=1e-4), what=kind)
    x32, r32 = x.astype(np.float32), r.astype(np.float32)
    np.testing.assert_allclose(_core.pool2d_forward(x32, mx, p, s, pad), y, rtol=1e-6)
    np.testing.assert_allclose(_core.pool2d_backward(x32, r32, mx, p, s, pad), dx, rtol=1e-5,
                               atol=1e-6)


def test_same_average_pool_counts_only_the_image():
    # Keras divides by the number of in-image positions of each window.
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    y = _core.pool2d_forward(x, False, (2, 2), (2, 2), "same")[0, :, :, 0]
    np.testing.assert_allclose(y, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])


def test_max_pool_tie_takes_the_first():
    x = np.array([[[[1.0], [3.0]], [[3.0], [2.0]]]], dtype=np.float32)
    dx = _core.pool2d_backward(x, np.ones((1, 1, 1, 1), np.float32), True, (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(dx.ravel(), [0, 1, 0, 0])


# ---- output shapes: Keras's arithmetic, as a table ---------------------------------
# (input (h, w, c), kernel, strides, dilation, padding) -> output (h, w)
SHAPES = [
    ((32, 32, 3), 3, 1, 1, "valid", (30, 30)), ((32, 32, 3), 3, 1, 1, "same", (32, 32)),
    ((32, 32, 3), 3, 2, 1, "valid", (15, 15)), ((32, 32, 3), 3, 2, 1, "same", (16, 16)),
    ((31, 30, 3), 3, 2, 1, "valid", (15, 14)), ((31, 30, 3), 3, 2, 1, "same", (16, 15)),
    ((31, 30, 3), 5, 3, 1, "same", (11, 10)), ((31, 30, 3), 5, 3, 1, "valid", (9, 9)),
    ((32, 32, 3), 3, 1, 2, "valid", (28, 28)), ((32, 32, 3), 3, 1, 2, "same", (32, 32)),
    ((9, 8, 1), (3, 2), (2, 1), 1, "valid", (4, 7)), ((9, 8, 1), 1, 1, 1, "valid", (9, 8)),
    ((9, 8, 1), 1, 2, 1, "same", (5, 4)), ((7, 7, 2), 7, 1, 1, "valid", (1, 1)),
    ((7, 7, 2), 3, 1, 3, "valid", (1, 1)), ((7, 7, 2), 4, 4, 1, "same", (2, 2)),
]


@pytest.mark.parametrize("inp,k,s,d,pad,out", SHAPES)
def test_conv2d_output_shapes(inp, k, s, d, pad, out):
    model = ember.Sequential([layers.Input(inp), layers.Conv2D(4, k, strides=s, dilation_rate=d,
                                                               padding=pad)])
    assert model.output_shape == (None,) + out + (4,)
    x = rng.random((2,) + inp).astype(np.float32)
    assert model.predict(x, verbose=0).shape == (2,) + out + (4,)


@pytest.mark.parametrize("inp,k,s,d,pad,out", SHAPES)
def test_conv2d_output_shapes_equal_keras(inp, k, s, d, pad, out):
    keras = keras_or_skip()
    kl = keras.layers.Conv2D(4, k, strides=s, dilation_rate=d, padding=pad)
    assert tuple(kl.compute_output_shape((None,) + inp)) == (None,) + out + (4,)


@pytest.mark.parametrize("inp,p,s,pad", [((7, 9, 2), 2, None, "valid"), ((7, 9, 2), 2, None, "same"),
                                         ((7, 9, 2), 3, 2, "same"), ((7, 9, 2), (3, 2), (1, 2), "valid")])
def test_pool_output_shapes_equal_keras(inp, p, s, pad):
    for cls in ("MaxPooling2D", "AveragePooling2D"):
        model = ember.Sequential([layers.Input(inp), getattr(layers, cls)(p, s, pad)])
        ph, pw = (p, p) if isinstance(p, int) else p
        sh, sw = (ph, pw) if s is None else ((s, s) if isinstance(s, int) else s)
        exp = tuple(-(-n // st) if pad == "same" else (n - q) // st + 1
                    for n, q, st in ((inp[0], ph, sh), (inp[1], pw, sw)))
        assert model.output_shape == (None,) + exp + (2,)
        keras = keras_or_skip()
        kl = getattr(keras.layers, cls)(p, s, pad)
        assert tuple(kl.compute_output_shape((None,) + inp)) == model.output_shape


# ---- PyTorch as the oracle ----------------------------------------------------------
def _torch_same_pad(F, xt, k, s, d, pad, value=0.0):
    """Pads an NCHW tensor as Keras's 'same' does (the extra row/column after)."""
    if pad == "valid":
        return xt
    pads = []
    for n, kk, ss, dd in ((xt.shape[3], k[1], s[1], d[1]), (xt.shape[2], k[0], s[0], d[0])):
        out = -(-n // ss)
        total = max((out - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(xt, pads, value=value)


@pytest.mark.parametrize("case", CONV_CASES + [((12, 11, 5), (3, 3), 7, (2, 2), (1, 1), "same")])
def test_conv2d_matches_torch(case):
    torch = torch_or_skip()
    F = torch.nn.functional
    (h, w, c), k, f, st, dil, pad = case
    x = rng.normal(size=(3, h, w, c)).astype(np.float32)
    kern = rng.normal(size=k + (c, f)).astype(np.float32)
    b = rng.normal(size=f).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(kern.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = F.conv2d(_torch_same_pad(F, xt, k, st, dil, pad), wt, bt, stride=st, dilation=dil)
    y = _core.conv2d_forward(x, kern, b, st, dil, pad)
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    dz = rng.normal(size=y.shape).astype(np.float32)
    yt.backward(torch.tensor(dz.transpose(0, 3, 1, 2)))
    dx, dw, db = _core.conv2d_backward(x, kern, dz, st, dil, pad)
    np.testing.assert_allclose(dx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, wt.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("p,s,pad", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "valid"),
                                     ((3, 3), (1, 1), "same"), ((3, 2), (2, 1), "same")])
def test_max_pool_matches_torch(p, s, pad):
    torch = torch_or_skip()
    F = torch.nn.functional
    x = rng.normal(size=(2, 7, 8, 3)).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = F.max_pool2d(_torch_same_pad(F, xt, p, s, (1, 1), pad, value=-np.inf), p, s)
    y = _core.pool2d_forward(x, True, p, s, pad)
    np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
    dy = rng.normal(size=y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(_core.pool2d_backward(x, dy, True, p, s, pad),
                               xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_avg_pool_matches_torch():
    torch = torch_or_skip()
    x = rng.normal(size=(2, 7, 8, 3)).astype(np.float32)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.avg_pool2d(xt, 3, 2)
    y = _core.pool2d_forward(x, False, (3, 3), (2, 2), "valid")
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    dy = rng.normal(size=y.shape).astype(np.float32)
    yt.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(_core.pool2d_backward(x, dy, False, (3, 3), (2, 2), "valid"),
                               xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gpool", ["GlobalMaxPooling2D", "GlobalAveragePooling2D", "Flatten"])
def test_cnn_training_step_matches_torch(gpool):
    """One SGD step of conv(same, relu) > maxpool > conv(valid, relu) > avgpool >
    global pooling (or Flatten) > dense softmax, from the same weights."""
    torch = torch_or_skip()
    nn = torch.nn
    ember.set_random_seed(3)
    model = ember.Sequential([
        layers.Input((10, 9, 3)), layers.Conv2D(6, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(), layers.Conv2D(8, (2, 3), activation="relu"),
        layers.AveragePooling2D((2, 1)), getattr(layers, gpool)(), layers.Dense(4, activation="softmax")])
    model.compile(ember.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x = rng.normal(size=(16, 10, 9, 3)).astype(np.float32)
    y = rng.integers(0, 4, 16)
    w = model.get_weights()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 6, 3, padding=1)
            self.c2 = nn.Conv2d(6, 8, (2, 3))
            feat = 8 if gpool != "Flatten" else 8 * 2 * 2
            self.d = nn.Linear(feat, 4)

        def forward(self, t):
            t = t.permute(0, 3, 1, 2)
            t = nn.functional.max_pool2d(torch.relu(self.c1(t)), 2)
            t = nn.functional.avg_pool2d(torch.relu(self.c2(t)), (2, 1))
            if gpool == "GlobalMaxPooling2D":
                t = t.amax(dim=(2, 3))
            elif gpool == "GlobalAveragePooling2D":
                t = t.mean(dim=(2, 3))
            else:
                t = t.permute(0, 2, 3, 1).reshape(len(t), -1)  # NHWC flatten order
            return self.d(t)

    net = Net()
    with torch.no_grad():
        for conv, kern, bias in ((net.c1, w[0], w[1]), (net.c2, w[2], w[3])):
            conv.weight.copy_(torch.tensor(kern.transpose(3, 2, 0, 1)))
            conv.bias.copy_(torch.tensor(bias))
        net.d.weight.copy_(torch.tensor(w[4].T))
        net.d.bias.copy_(torch.tensor(w[5]))
    out = net(torch.tensor(x))
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               torch.softmax(out, 1).detach().numpy(), rtol=1e-4, atol=1e-5)
    loss_t = nn.functional.cross_entropy(out, torch.tensor(y))
    loss_t.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.1 * p.grad
    loss = model.train_on_batch(x, y)
    assert abs(float(np.ravel(loss)[0]) - loss_t.item()) < 1e-5
    got = model.get_weights()
    want = [net.c1.weight.detach().numpy().transpose(2, 3, 1, 0), net.c1.bias.detach().numpy(),
            net.c2.weight.detach().numpy().transpose(2, 3, 1, 0), net.c2.bias.detach().numpy(),
            net.d.weight.detach().numpy().T, net.d.bias.detach().numpy()]
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


# ---- layers: contract, config, keepdims, bad input ------------------------------------
@pytest.mark.parametrize("layer,out", [
    (lambda: layers.Conv2D(5, 3, strides=2, padding="same", activation="relu"), (4, 3, 5)),
    (lambda: layers.MaxPooling2D(2), (3, 2, 3)),
    (lambda: layers.AveragePooling2D(3, 1, "same"), (7, 5, 3)),
    (lambda: layers.GlobalMaxPooling2D(), (3,)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (1, 1, 3)),
])
def test_layer_contract(layer, out):
    lay = layer()
    model = ember.Sequential([layers.Input((7, 5, 3)), lay, layers.Flatten(),
                              layers.Dense(2, activation="softmax")])
    assert lay.output_shape == (None,) + out
    clone = type(lay).from_config(lay.get_config())
    assert clone.get_config() | {"name": lay.name} == lay.get_config()
    if isinstance(lay, layers.Conv2D):
        assert [w.shape for w in lay.get_weights()] == [(3, 3, 3, 5), (5,)]
        assert lay.count_params() == 3 * 3 * 3 * 5 + 5
    x = rng.random((32, 7, 5, 3)).astype(np.float32)
    y = (x[:, :, :, 0].mean(axis=(1, 2)) > 0.5).astype(int)
    model.compile(ember.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before


def test_conv_config_matches_keras_keys():
    keras = keras_or_skip()
    for name, args in (("Conv2D", (4, 3)), ("MaxPooling2D", ()), ("AveragePooling2D", (2,)),
                       ("GlobalMaxPooling2D", ()), ("GlobalAveragePooling2D", ())):
        mine = getattr(layers, name)(*args).get_config()
        theirs = getattr(keras.layers, name)(*args).get_config()
        assert set(mine) == set(theirs), name
        for key in ("kernel_size", "strides", "padding", "pool_size", "dilation_rate", "keepdims"):
            if key in theirs:
                assert tuple(np.ravel(mine[key])) == tuple(np.ravel(theirs[key])), (name, key)


def test_keras_names_and_aliases():
    assert layers.Conv2D(2, 3).name.startswith("conv2d")
    assert layers.MaxPooling2D().name.startswith("max_pooling2d")
    assert layers.MaxPool2D is layers.MaxPooling2D
    assert layers.GlobalAvgPool2D is layers.GlobalAveragePooling2D


def test_cnn_save_and_load(tmp_path):
    model = ember.Sequential([layers.Input((8, 8, 1)), layers.Conv2D(3, 3, activation="relu"),
                              layers.MaxPooling2D(), layers.GlobalAveragePooling2D(),
                              layers.Dense(2)])
    model.compile("adam", "mse")
    path = str(tmp_path / "cnn.keras")
    model.save(path)
    again = ember.models.load_model(path)
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("make,inp,match", [
    (lambda: layers.Conv2D(4, 5), (4, 4, 1), "zero or negative"),
    (lambda: layers.Conv2D(4, 3, dilation_rate=3), (6, 6, 1), "zero or negative"),
    (lambda: layers.MaxPooling2D(5), (4, 4, 1), "zero or negative"),
    (lambda: layers.AveragePooling2D((1, 5)), (4, 4, 1), "zero or negative"),
    (lambda: layers.Conv2D(4, 3), (8, 8), "expected ndim=4, found ndim=3"),
    (lambda: layers.MaxPooling2D(), (8,), "expected ndim=4, found ndim=2"),
    (lambda: layers.GlobalMaxPooling2D(), (8, 8, 2, 1), "expected ndim=4, found ndim=5"),
])
def test_bad_input_shapes(make, inp, match):
    with pytest.raises(ValueError, match=match):
        ember.Sequential([layers.Input(inp), make()])


@pytest.mark.parametrize("make,match", [
    (lambda: layers.Conv2D(0, 3), "filters=0"),
    (lambda: layers.Conv2D(-2, 3), "filters=-2"),
    (lambda: layers.Conv2D(2.5, 3), "filters=2.5"),
    (lambda: layers.Conv2D(4, 0), "kernel_size=0"),
    (lambda: layers.Conv2D(4, (3, -1)), r"kernel_size=\(3, -1\)"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), "kernel_size"),
    (lambda: layers.Conv2D(4, 3, strides=0), "strides=0"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: layers.Conv2D(4, 3, padding="full"), "padding='full'"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), "channels_first"),
    (lambda: layers.MaxPooling2D(0), "pool_size=0"),
    (lambda: layers.MaxPooling2D(2, strides=-1), "strides=-1"),
    (lambda: layers.AveragePooling2D(2, padding="causal"), "padding='causal'"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_channels_and_bad_data():
    conv = layers.Conv2D(4, 3)
    model = ember.Sequential([layers.Input((8, 8, 3)), conv])
    with pytest.raises(ValueError, match="expected shape"):
        model.predict(np.zeros((2, 8, 8, 1), np.float32), verbose=0)
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 3"):
        ember.Sequential([layers.Input((8, 8, 2)), conv])
    with pytest.raises(ValueError, match="NaN"):
        bad = np.zeros((2, 8, 8, 3), np.float32)
        bad[1, 2, 3, 0] = np.nan
        model.predict(bad, verbose=0)
    with pytest.raises(ValueError):
        _core.conv2d_forward(np.zeros((1, 2, 2, 1), np.float32), np.zeros((3, 3, 1, 1), np.float32),
                             None, (1, 1), (1, 1), "valid")
    with pytest.raises(ValueError, match="padding"):
        _core.pool2d_forward(np.zeros((1, 4, 4, 1), np.float32), True, (2, 2), (2, 2), "full")
