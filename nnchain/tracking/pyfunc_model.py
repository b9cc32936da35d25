"""nnchain's MLflow model, in MLflow's "models from code" form: this file is the model.

MLflow copies this file into the model folder and runs it when the model is loaded;
``set_model`` at the bottom names the model object. Nothing is pickled. The model's
artifacts are plain files:

- ``weights.npz``: W1, b1, W2, b2, ... (read with ``allow_pickle=False``);
- ``scaling.npz``: ``mean`` and ``scale`` (d,) of the training split (absent when the
  trial did not standardise its data): x_std = (x - mean) / scale;
- ``config.json``: the trial's resolved config (the network's activations);
- ``columns.json``: the task, the input feature names and the output column names.

It needs numpy and nnchain's engine (``nnchain.nn``, ``nnchain.weights``): nnchain must be
installed where the model is loaded (the model's requirements name it; nnchain's code is
not copied into the model folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

WEIGHTS, SCALING, CONFIG, COLUMNS = "weights", "scaling", "config", "columns"
ARTIFACT_FILES = {WEIGHTS: "weights.npz", SCALING: "scaling.npz", CONFIG: "config.json",
                  COLUMNS: "columns.json"}


class Predictor:
    """The forward pass of a trained network on raw inputs, in float64.

    ``predict(x)``: x (n, d) raw features -> (n, k) class probabilities (classification;
    a single sigmoid unit p becomes the two columns 1 - p, p) or values (regression).
    """

    def __init__(self, weights: dict[str, np.ndarray], config: dict, columns: dict,
                 scaling: dict[str, np.ndarray] | None) -> None:
        from nnchain.nn import build_network

        model = config["model"]
        layers = len(weights) // 2
        sizes = [weights["W1"].shape[0]] + [weights[f"W{i}"].shape[1]
                                            for i in range(1, layers + 1)]
        self.network = build_network(sizes, activation=model["activation"],
                                     output=model["output"], cost=model["cost"],
                                     init=model["init"], rng=np.random.default_rng(0),
                                     dtype=np.float64)
        self.network.set_weights(weights)
        self.features: list[str] = list(columns["features"])
        self.outputs: list[str] = list(columns["outputs"])
        self.task: str = columns["task"]
        self.mean = None if scaling is None else np.asarray(scaling["mean"], np.float64)
        self.scale = None if scaling is None else np.asarray(scaling["scale"], np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"input must have {len(self.features)} columns "
                             f"({', '.join(self.features)}), got shape {x.shape}")
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        out = self.network.predict(x)
        if self.task != "regression" and out.shape[1] == 1:
            return np.hstack([1.0 - out, out])
        return out


def predictor_from_files(paths: dict) -> Predictor:
    """A Predictor from the artifact paths MLflow gives ``load_context`` (by artifact name)."""
    from nnchain.weights import load_weights

    weights = load_weights(paths[WEIGHTS], field="model weights")
    scaling = None
    if paths.get(SCALING):
        with np.load(paths[SCALING], allow_pickle=False) as archive:
            scaling = {"mean": archive["mean"], "scale": archive["scale"]}
    config = json.loads(Path(paths[CONFIG]).read_text())
    columns = json.loads(Path(paths[COLUMNS]).read_text())
    return Predictor(weights, config, columns, scaling)


class NnchainModel(PythonModel):
    """The pyfunc model: ``predict`` takes an ndarray or a DataFrame of raw features."""

    def load_context(self, context) -> None:
        self.predictor = predictor_from_files(dict(context.artifacts))

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        if hasattr(model_input, "to_numpy"):
            model_input = model_input.to_numpy()
        return self.predictor.predict(model_input)


set_model(NnchainModel())
