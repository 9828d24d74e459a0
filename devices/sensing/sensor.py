"""The sensor model: when a device takes fixes, and how far they are from the truth.

Noise is a swappable `NoiseModel`; `SimpleGpsNoise` is the first, deliberately plain one
(independent Gaussian error, a conservative reported accuracy, always GPS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from devices.motion.paths import TruePath

FloatArray = NDArray[np.float64]


class NoiseModel(Protocol):
    """Turns true positions at times t into reported ones: (x, y, acc, src)."""

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.str_]]: ...


@dataclass(frozen=True)
class SimpleGpsNoise:
    """Independent Gaussian error of `sigma_m` per axis; `acc` drawn from `acc_m` (at or
    above the true 68% radius, as receivers tend to report); source always GPS."""

    sigma_m: float = 3.0
    acc_m: tuple[float, float] = (5.0, 15.0)

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.str_]]:
        n = len(t)
        err = rng.normal(0.0, self.sigma_m, (n, 2))
        acc = rng.uniform(self.acc_m[0], self.acc_m[1], n)
        return x + err[:, 0], y + err[:, 1], acc, np.full(n, "gps")


@dataclass(frozen=True)
class FixColumns:
    """A device's fixes as columns, in the city frame (projection happens on output)."""

    t: FloatArray
    x: FloatArray
    y: FloatArray
    acc: FloatArray
    batt: NDArray[np.int64]
    src: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.t)


def fix_times(
    rng: np.random.Generator, t0: float, t1: float, interval: float, whole_seconds: bool = False
) -> FloatArray:
    """A device's own fix schedule in [t0, t1): a random phase, then every `interval`
    seconds with a little clock jitter; strictly increasing."""
    phase = rng.uniform(0.0, interval)
    n = max(0, int(np.ceil((t1 - t0 - phase) / interval)))
    jitter = min(0.5, 0.05 * interval)
    t = t0 + phase + interval * np.arange(n) + rng.uniform(-jitter, jitter, n)
    if whole_seconds:
        t = np.floor(t)
    t = t[(t >= t0) & (t < t1)]
    return np.round(t, 3)


def battery(rng: np.random.Generator, t: FloatArray, t0: float) -> NDArray[np.int64]:
    """Battery percent: a seeded start level draining 0.5-2 % per hour."""
    start = rng.uniform(45.0, 100.0)
    drain = rng.uniform(0.5, 2.0)
    return np.clip(np.ceil(start - drain * (t - t0) / 3600.0), 1, 100).astype(np.int64)


def sample_fixes(
    rng: np.random.Generator,
    path: TruePath,
    t0: float,
    t1: float,
    interval: float,
    noise: NoiseModel,
    whole_seconds: bool = False,
) -> FixColumns:
    """Fixes of a device following `path`, one every `interval` seconds in [t0, t1)."""
    t = fix_times(rng, t0, t1, interval, whole_seconds)
    tx, ty = path.at(t)
    x, y, acc, src = noise.perturb(rng, t, tx, ty)
    return FixColumns(t, x, y, acc, battery(rng, t, t0), src)
