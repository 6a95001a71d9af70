"""plot_model and model_to_dot through pydot (and graphviz for images)."""
import shutil
import sys

import pytest

import ember
from ember import layers

pydot = pytest.importorskip("pydot", reason="pydot (the test extra) draws the graph")


def branching():
    i = ember.Input((8,), name="features")
    a = layers.Dense(4, activation="relu", name="left")(i)
    b = layers.Dense(4, name="right")(i)
    out = layers.Dense(1, activation="sigmoid", name="score")(layers.Concatenate(name="cat")([a, b]))
    return ember.Model(i, out)


def edges(dot):
    names = {n.get_name(): n.get("label").strip('"').split("\\n")[0].split(" (")[0]
             for n in dot.get_nodes() if n.get("label")}
    return sorted((names[e.get_source()], names[e.get_destination()]) for e in dot.get_edges())


def test_functional_graph_has_every_connection():
    dot = ember.utils.model_to_dot(branching(), show_shapes=True, show_layer_activations=True,
                                   show_trainable=True, show_dtype=True)
    assert edges(dot) == [("cat", "score"), ("features", "left"), ("features", "right"),
                          ("left", "cat"), ("right", "cat")]
    text = dot.to_string()
    assert "Output shape: (None, 8)" in text and "Activation: relu" in text
    assert "Trainable: True" in text and "dtype: float32" in text
    assert "Concatenate" in text


def test_sequential_is_a_chain_and_names_can_be_hidden():
    m = ember.Sequential([ember.Input((5,)), layers.Dense(3, name="a"), layers.Dense(2, name="b")])
    assert edges(ember.utils.model_to_dot(m)) == [("a", "b")]
    bare = ember.utils.model_to_dot(m, show_layer_names=False, rankdir="LR").to_string()
    assert "(Dense)" not in bare and "Dense" in bare and "LR" in bare


def test_writes_dot_source_and_images(tmp_path):
    m = branching()
    ember.utils.plot_model(m, to_file=tmp_path / "m.dot", show_shapes=True)
    source = (tmp_path / "m.dot").read_text()
    assert source.startswith("digraph") and "score (Dense)" in source
    if shutil.which("dot") is None:  # scripts/test installs graphviz; elsewhere say so
        with pytest.raises(ImportError, match="graphviz"):
            ember.utils.plot_model(m, to_file=tmp_path / "m.png")
        return
    ember.utils.plot_model(m, to_file=tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ember.utils.plot_model(m, to_file=tmp_path / "m.svg", rankdir="LR")
    assert b"<svg" in (tmp_path / "m.svg").read_bytes()


def test_refuses_what_it_cannot_draw(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="rankdir"):
        ember.utils.model_to_dot(branching(), rankdir="BT")
    with pytest.raises(ValueError, match="not yet been built"):
        ember.utils.plot_model(ember.Sequential([layers.Dense(2)]), to_file=tmp_path / "x.dot")
    monkeypatch.setitem(sys.modules, "pydot", None)
    with pytest.raises(ImportError, match="pip install pydot"):
        ember.utils.plot_model(branching(), to_file=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
