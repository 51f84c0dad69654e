"""The shared layer test (as KerasHub's `run_layer_test`): every custom layer of `models/`
(`tests/layer_cases.py`) is built and called, rebuilt from its config, saved in a `.keras` model
and reloaded, each time giving the same outputs, under TensorFlow; and run under JAX with the same
weights, giving the same outputs. A registered layer without a case fails the suite."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import models  # noqa: F401 - registers every custom layer
from models import layers
from tests.conftest import REPO_ROOT
from tests.layer_cases import CASES, RANDOM, outputs


def assert_same(got, want, what):
    assert len(got) == len(want), what
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=what)


def test_every_registered_layer_has_a_case():
    registered = {name.split(">")[-1] for name, kind in keras.saving.get_custom_objects().items()
                  if name.startswith(f"{layers.PACKAGE}>") and isinstance(kind, type)
                  and issubclass(kind, keras.layers.Layer) and not issubclass(kind, keras.Model)}
    assert registered and registered <= set(CASES), sorted(registered - set(CASES))


@pytest.mark.parametrize("name", CASES)
def test_layer_builds_serialises_and_reloads(name, tmp_path):
    make, inputs = CASES[name]
    args = inputs(np.random.default_rng(0))
    layer = make()
    first = outputs(layer, args)
    assert all(np.all(np.isfinite(value)) for value in first if value.dtype.kind == "f"), name
    clone = keras.saving.deserialize_keras_object(json.loads(json.dumps(keras.saving.serialize_keras_object(layer))))
    as_json = lambda config: json.loads(json.dumps(config, default=str))  # noqa: E731 - tuples and lists alike
    assert type(clone) is type(layer) and as_json(clone.get_config()) == as_json(layer.get_config())
    if name in RANDOM:  # the same seed draws the same; the state then moves on, so compare first draws
        assert_same(outputs(clone, args), first, f"{name} from its config")
        return
    outputs(clone, args)
    clone.set_weights(layer.get_weights())
    assert_same(outputs(clone, args), first, f"{name} from its config")
    symbolic = [keras.Input(a.shape[1:], dtype=str(a.dtype)) for a in args]
    model = keras.Model(symbolic, layer(*symbolic))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    result = reloaded(args, training=False) if len(args) > 1 else reloaded(args[0], training=False)
    result = result if isinstance(result, (list, tuple)) else [result]
    assert_same([keras.ops.convert_to_numpy(value) for value in result], first, f"{name} saved and reloaded")


def test_every_layer_gives_the_same_outputs_under_jax(tmp_path):
    weights, expected = {}, {}
    for name, (make, inputs) in CASES.items():
        args = inputs(np.random.default_rng(0))
        layer = make()
        outputs(layer, args)
        for i, value in enumerate(layer.get_weights()):
            weights[f"{name}/{i}"] = value
        for i, value in enumerate(outputs(layer, args)):
            expected[f"{name}/{i}"] = value
    np.savez(tmp_path / "weights.npz", **weights)
    result = subprocess.run([sys.executable, "-m", "tests.layer_cases", str(tmp_path / "weights.npz"),
                             str(tmp_path / "jax.npz")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "jax", result.stderr[-3000:]
    got = np.load(tmp_path / "jax.npz")
    assert set(got.files) == set(expected)
    for key, value in expected.items():
        if key.split("/")[0] in RANDOM:
            assert (got[key].shape, got[key].dtype) == (value.shape, value.dtype), key
        else:
            np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
