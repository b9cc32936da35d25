"""Named parameters stored as views into one flat array, their gradients into another.

A network keeps all its parameters this way so that an optimizer updates every one of
them with a few whole-array operations, whatever the depth (the per-parameter Python
loop is most of an SGD step on a small network).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


class ParameterSet:
    """``values`` and ``grads``: flat arrays of equal size; ``value(name)`` and
    ``grad(name)`` are C-contiguous views of each parameter's shape.

    Names starting with "W" are weight matrices (the ones weight decay applies to).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dtype: np.dtype) -> None:
        self.shapes = dict(shapes)
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            self.slices[name] = slice(offset, offset + size)
            offset += size
        self.values = np.zeros(offset, dtype=dtype)
        self.grads = np.zeros(offset, dtype=dtype)

    @property
    def names(self) -> list[str]:
        return list(self.shapes)

    def view(self, flat: np.ndarray, name: str) -> np.ndarray:
        """Parameter ``name``'s part of a flat array laid out like ``values``."""
        return flat[self.slices[name]].reshape(self.shapes[name])

    def value(self, name: str) -> np.ndarray:
        return self.view(self.values, name)

    def grad(self, name: str) -> np.ndarray:
        return self.view(self.grads, name)

    def items(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, value view, grad view) in storage order."""
        for name in self.shapes:
            yield name, self.value(name), self.grad(name)

    def layer_span(self, layer: int) -> slice:
        """The flat part holding W{layer} and b{layer} (1-based), which lie side by side."""
        weight, bias = self.slices[f"W{layer}"], self.slices[f"b{layer}"]
        if weight.stop != bias.start:
            raise ValueError(f"W{layer} and b{layer} are not adjacent")
        return slice(weight.start, bias.stop)

    def weight_names(self) -> list[str]:
        return [name for name in self.shapes if name.startswith("W")]

    def weight_mask(self) -> np.ndarray:
        """Flat 0/1 array (the values' dtype) marking the entries of weight matrices."""
        mask = np.zeros_like(self.values)
        for name in self.weight_names():
            mask[self.slices[name]] = 1
        return mask
