"""The training loop, as a generator: one ``EpochRecord`` per epoch, so the caller can log,
checkpoint or stop between epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from nnchain.errors import DivergedError, SpecError
from nnchain.nn import diagnostics as diag
from nnchain.nn import fastmath, orders
from nnchain.nn.heads import SoftmaxCrossEntropy
from nnchain.nn.network import Network
from nnchain.nn.optim import Optimizer


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch (0-based ``epoch``) measured, with the learning rate it used."""

    epoch: int
    lr: float
    metrics: dict[str, float]


@dataclass(frozen=True)
class Position:
    """A point between two mini-batches of epoch ``epoch``: ``batch`` batches done, the
    shuffling rng's state at the start of the epoch (it redraws the epoch's order) and
    the running sums of the epoch's train cost and correct predictions."""

    epoch: int
    batch: int
    rng_state: dict
    total_cost: float
    correct: int


def train_step(network: Network, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *,
               lr: float, diagnostics: bool | Collection[str] = False,
               layer_lr: Sequence[float] | None = None) -> tuple[float, dict[str, float]]:
    """One gradient step on the batch (x, y); returns (batch cost, diagnostics or {}).

    The diagnostics (see ``diagnostics.py``; True for every kind, or the kinds wanted)
    come from this batch's forward and backward arrays and this step's updates; the step
    computes the norms of those kinds only, and none without them. ``layer_lr``
    multiplies each layer's learning rate (see ``orders.py``).
    """
    kinds = diag.wanted(diagnostics)
    cost = network.forward_backward(x, y, diagnostics=kinds)
    before = network.params.values.copy() if "effect" in kinds else None
    if layer_lr is None:
        update_norms = optimizer.step(lr, update_norms="update_ratio" in kinds)
    else:
        update_norms = _step_each_layer(network, optimizer, lr, layer_lr)
    if not kinds:
        return cost, {}
    metrics = dict(network.diagnostics)
    for i in range(1, len(network.layers) + 1):
        weight_norm = diag.key("weight_norm", i)
        if "update_ratio" in kinds:
            ratio = diag.update_ratio(update_norms[f"W{i}"], metrics[weight_norm])
            metrics[diag.key("update_ratio", i)] = ratio
        if "sensitivity" in kinds:
            metrics[diag.key("sensitivity", i)] = (metrics[diag.key("grad_norm", i)]
                                                   * metrics[weight_norm])
            if "grad_norm" not in kinds:
                del metrics[diag.key("grad_norm", i)]
        if weight_norm in metrics and "weight_norm" not in kinds:
            del metrics[weight_norm]
    if before is not None:
        metrics.update(orders.solo_effects(network, x, y, cost, before))
    return cost, metrics


def _step_each_layer(network: Network, optimizer: Optimizer, lr: float,
                     layer_lr: Sequence[float]) -> dict[str, float]:
    """Every layer updated from the same grads, with its own learning rate; ||Delta W||."""
    norms = {}
    for layer in range(1, len(network.layers) + 1):
        delta = optimizer.step_layer(layer, orders.layer_rate(lr, layer_lr, layer),
                                     advance=layer == 1)
        size = network.layers[layer - 1].params["W"].size
        norms[f"W{layer}"] = diag.frobenius(delta[:size])
    return norms


def count_correct(output: np.ndarray, target: np.ndarray) -> int:
    """Correct predictions: output > 0.5 vs target > 0.5 for one output column, else
    argmax of output vs argmax of target."""
    if output.shape[1] == 1:
        return int(np.count_nonzero((output > 0.5) == (target > 0.5)))
    return int(np.count_nonzero(output.argmax(axis=1) == target.argmax(axis=1)))


def train_epochs(network: Network, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *,
                 epochs: int, batch_size: int | None, rng: np.random.Generator,
                 x_val: np.ndarray | None = None, y_val: np.ndarray | None = None,
                 schedule: Callable[[int], float] | None = None, start_epoch: int = 0,
                 diagnostics: bool | Collection[str] = True,
                 accuracy: bool = False, update_order: str = "simultaneous",
                 layer_lr: Sequence[float] | None = None, resume: Position | None = None,
                 on_batch: Callable[[Position], None] | None = None
                 ) -> Iterator[EpochRecord]:
    """Train epochs ``start_epoch .. epochs - 1`` (``epochs`` is the run's total), yielding
    an ``EpochRecord`` after each.

    x: (n, n_inputs), y: (n, n_outputs) already encoded (one-hot or a 0/1 column); both
    are converted once, here, to the network's dtype. ``batch_size`` None (or >= n) is
    full batch, in order, drawing nothing from ``rng``; otherwise each epoch visits
    ``rng.permutation(n)`` in chunks of ``batch_size``.
    ``schedule(epoch)`` gives each epoch's learning rate (default ``optimizer.lr``).
    To resume a checkpointed run, restore weights, optimizer state and the rng's
    ``bit_generator.state`` and pass ``start_epoch``: the run continues bit for bit.

    Metrics: ``train_cost`` (batch costs weighted by batch size: no extra forward pass),
    ``lr``, ``val_cost`` with validation data, ``train_accuracy`` (on each batch's
    predictions, before its step) and ``val_accuracy`` with ``accuracy``; with
    ``diagnostics`` (True for every kind, or the kinds wanted), the per-layer keys of
    ``diagnostics.py`` measured on the LAST batch of the epoch. A non-finite batch cost
    raises DivergedError(epoch, running train cost) at once.

    ``update_order`` and ``layer_lr``: see ``orders.py``. ``on_batch(position)`` is called
    between two mini-batches of an epoch (not after its last one), so a caller can save a
    checkpoint there; ``resume`` (a ``Position`` of epoch ``start_epoch``, with weights and
    optimizer state restored from the same point) continues such a run bit for bit.

    Inputs are validated here, before the first epoch starts (SpecError).
    """
    x, y = _training_arrays(network, x, y, "x", "y")
    has_val = x_val is not None or y_val is not None
    if has_val:
        if x_val is None or y_val is None:
            raise SpecError("x_val", "x_val and y_val must be given together")
        x_val, y_val = _training_arrays(network, x_val, y_val, "x_val", "y_val")
    if not (isinstance(start_epoch, int) and isinstance(epochs, int) and
            0 <= start_epoch <= epochs):
        raise SpecError("epochs", f"0 <= start_epoch <= epochs must hold, but got "
                        f"start_epoch={start_epoch!r}, epochs={epochs!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise SpecError("batch_size", f"must be None or an integer >= 1, but got "
                        f"{batch_size!r}")
    orders.check_order(update_order, layer_lr, len(network.layers))
    if resume is not None and (resume.epoch != start_epoch or resume.batch < 1):
        raise SpecError("resume", f"must be a position inside epoch start_epoch="
                        f"{start_epoch}, but got epoch {resume.epoch}, batch {resume.batch}")
    return _epochs(network, optimizer, x, y, epochs=epochs, batch_size=batch_size, rng=rng,
                   x_val=x_val if has_val else None, y_val=y_val if has_val else None,
                   schedule=schedule, start_epoch=start_epoch, diagnostics=diagnostics,
                   accuracy=accuracy, update_order=update_order,
                   layer_lr=None if layer_lr is None else [float(m) for m in layer_lr],
                   resume=resume, on_batch=on_batch)


def _epochs(network: Network, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *,
            epochs: int, batch_size: int | None, rng: np.random.Generator,
            x_val: np.ndarray | None, y_val: np.ndarray | None,
            schedule: Callable[[int], float] | None, start_epoch: int,
            diagnostics: bool | Collection[str], accuracy: bool, update_order: str,
            layer_lr: list[float] | None, resume: Position | None,
            on_batch: Callable[[Position], None] | None) -> Iterator[EpochRecord]:
    kinds = diag.wanted(diagnostics)
    n = len(x)
    full_batch = batch_size is None or batch_size >= n
    sequential = update_order != "simultaneous"
    for epoch in range(start_epoch, epochs):
        lr = float(schedule(epoch)) if schedule is not None else optimizer.lr
        total_cost, seen, correct = 0.0, 0, 0
        metrics: dict[str, float] = {}
        skip = 0
        if resume is not None:
            rng.bit_generator.state = resume.rng_state
            total_cost, correct, skip = resume.total_cost, resume.correct, resume.batch
            resume = None
        rng_state = rng.bit_generator.state if on_batch is not None else {}
        batches = _batches(x, y, None if full_batch else batch_size, rng)
        for batch, (x_batch, y_batch, last) in enumerate(batches):
            if batch < skip:
                seen += len(x_batch)
                continue
            wanted = kinds if last else False
            if sequential:
                cost, layer_metrics, output = orders.layerwise_step(
                    network, optimizer, x_batch, y_batch, lr=lr, order=update_order,
                    layer_lr=layer_lr, diagnostics=wanted or (), keep_output=accuracy)
            else:
                cost, layer_metrics = train_step(network, optimizer, x_batch, y_batch, lr=lr,
                                                 diagnostics=wanted, layer_lr=layer_lr)
                output = network.head.output
            total_cost += cost * len(x_batch)
            seen += len(x_batch)
            if not math.isfinite(cost):
                raise DivergedError(epoch, total_cost / seen)
            if accuracy:
                correct += count_correct(output, y_batch)
            metrics.update(layer_metrics)
            if on_batch is not None and not last:
                on_batch(Position(epoch, batch + 1, rng_state, total_cost, correct))
        metrics = {"train_cost": total_cost / n, "lr": lr, **metrics}
        if accuracy:
            metrics["train_accuracy"] = correct / n
        if x_val is not None and y_val is not None:
            metrics.update(_validation_metrics(network, x_val, y_val, accuracy))
        yield EpochRecord(epoch=epoch, lr=lr, metrics=metrics)


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int | None,
             rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
    """(x_batch, y_batch, is_last): the whole set, or a fresh shuffle cut in batches."""
    if batch_size is None:
        yield x, y, True
        return
    order = rng.permutation(len(x))
    starts = range(0, len(x), batch_size)
    for start in starts:
        index = order[start:start + batch_size]
        yield x[index], y[index], start == starts[-1]


def _validation_metrics(network: Network, x_val: np.ndarray, y_val: np.ndarray,
                        accuracy: bool) -> dict[str, float]:
    z = network.logits(x_val)
    metrics = {"val_cost": network.head.value(z, y_val)}
    if accuracy:
        metrics["val_accuracy"] = count_correct(network.head.predict(z), y_val) / len(x_val)
    return metrics


def _training_arrays(network: Network, x: np.ndarray, y: np.ndarray, x_name: str,
                     y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """x, y as C-ordered arrays of the network's dtype, shapes checked."""
    n_in, n_out = network.sizes[0], network.sizes[-1]
    x = np.ascontiguousarray(x, dtype=network.dtype)
    y = np.ascontiguousarray(y, dtype=network.dtype)
    if x.ndim != 2 or x.shape[1] != n_in or len(x) == 0:
        raise SpecError(x_name, f"must have shape (n, {n_in}) with n >= 1, but got {x.shape}")
    if y.shape != (len(x), n_out):
        raise SpecError(y_name, f"must have shape ({len(x)}, {n_out}), but got {y.shape}")
    if isinstance(network.head, SoftmaxCrossEntropy):
        totals = fastmath.row_sums(y)
        worst = int(np.argmax(np.abs(totals - 1)))
        if not abs(totals[worst] - 1) <= 1e-3:
            raise SpecError(y_name, f"rows must sum to 1 for softmax + cross_entropy (one-hot "
                            f"or distributions), but row {worst} sums to {totals[worst]:.6g}")
    return x, y
