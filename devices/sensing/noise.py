"""Realistic, seeded, swappable position noise: correlated GPS error, multipath bursts,
wild jumps, and wifi / cell fallback fixes, all as `devices.sensing.sensor.NoiseModel`s.

Every model reports `acc` as the 68 % radius the device *believes*; for a 2-D normal error
of per-axis sigma that radius is `R68 * sigma`. Models draw their per-track parameters
(sigma, correlation time, optimism) once per `perturb` call, i.e. once per device track."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from devices.sensing.sensor import NoiseModel, SimpleGpsNoise

FloatArray = NDArray[np.float64]
Perturbed = tuple[FloatArray, FloatArray, FloatArray, NDArray[np.str_]]

# 68 % radius of a circular 2-D normal error, in units of its per-axis sigma
R68 = math.sqrt(-2.0 * math.log(0.32))


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw spread evenly over orders of magnitude (most tracks good, a few poor)."""
    if hi <= lo:
        return float(lo)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def gauss_markov(
    rng: np.random.Generator, t: FloatArray, sigma: float, tau: float
) -> tuple[FloatArray, FloatArray]:
    """First-order Gauss-Markov (AR(1) on irregular times) error per axis: stationary
    sigma, autocorrelation exp(-dt / tau)."""
    n = len(t)
    e = np.zeros((n, 2))
    if n == 0:
        return e[:, 0], e[:, 1]
    w = rng.normal(0.0, 1.0, (n, 2))
    e[0] = sigma * w[0]
    phi = np.exp(-np.maximum(np.diff(t), 0.0) / max(tau, 1e-9))
    drive = sigma * np.sqrt(1.0 - phi**2)
    for i in range(1, n):  # a few thousand fixes per track at most: plain loop is fine
        e[i] = phi[i - 1] * e[i - 1] + drive[i - 1] * w[i]
    return e[:, 0], e[:, 1]


@dataclass(frozen=True)
class GaussMarkovNoise:
    """Correlated GPS error: per track, sigma (per axis) and correlation time tau are drawn
    log-uniform from their ranges; reported acc is R68 * sigma with a little log-normal
    jitter, and on a fraction `optimistic_p` of tracks it is scaled down by `optimism`
    (receivers that claim better than they deliver)."""

    sigma_m: tuple[float, float] = (5.0, 30.0)
    tau_s: tuple[float, float] = (30.0, 300.0)
    acc_jitter: float = 0.15
    optimistic_p: float = 0.2
    optimism: tuple[float, float] = (0.6, 0.85)
    src: str = "gps"

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> Perturbed:
        n = len(t)
        sigma = log_uniform(rng, *self.sigma_m)
        tau = log_uniform(rng, *self.tau_s)
        ex, ey = gauss_markov(rng, t, sigma, tau)
        factor = rng.uniform(*self.optimism) if rng.random() < self.optimistic_p else 1.0
        acc = R68 * sigma * factor * np.exp(rng.normal(0.0, self.acc_jitter, n))
        return x + ex, y + ey, np.maximum(acc, 1.0), np.full(n, self.src)


def wifi_fix(
    rng: np.random.Generator, x: float, y: float, acc_m: tuple[float, float] = (20.0, 60.0)
) -> tuple[float, float, float]:
    """A wifi-positioned fix: acc 20-60 m and an error consistent with it."""
    acc = float(rng.uniform(*acc_m))
    ex, ey = rng.normal(0.0, acc / R68, 2)
    return x + float(ex), y + float(ey), acc


def cell_fix(
    rng: np.random.Generator, x: float, y: float, acc_m: tuple[float, float] = (300.0, 1000.0)
) -> tuple[float, float, float]:
    """A cell-tower fix: acc 300-1000 m and an error consistent with it."""
    acc = float(rng.uniform(*acc_m))
    ex, ey = rng.normal(0.0, acc / R68, 2)
    return x + float(ex), y + float(ey), acc


@dataclass(frozen=True)
class SourceMix:
    """Per fix, a GPS fix from `gps`, or with probability `wifi_p` a wifi fix, or with
    probability `cell_p` a cell fix (the tag fell back when it lost the sky)."""

    gps: NoiseModel = field(default_factory=GaussMarkovNoise)
    wifi_p: float = 0.0
    cell_p: float = 0.0
    wifi_acc_m: tuple[float, float] = (20.0, 60.0)
    cell_acc_m: tuple[float, float] = (300.0, 1000.0)

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> Perturbed:
        ox, oy, acc, src = self.gps.perturb(rng, t, x, y)
        ox, oy, acc, src = ox.copy(), oy.copy(), acc.copy(), src.astype("<U4")
        u = rng.random(len(t))
        for i in np.flatnonzero(u < self.wifi_p + self.cell_p).tolist():
            cell = u[i] < self.cell_p
            make, rng_acc = (cell_fix, self.cell_acc_m) if cell else (wifi_fix, self.wifi_acc_m)
            ox[i], oy[i], acc[i] = make(rng, float(x[i]), float(y[i]), rng_acc)
            src[i] = "cell" if cell else "wifi"
        return ox, oy, acc, src


@dataclass(frozen=True)
class MultipathNoise:
    """Multipath bursts on top of `base`: near a building (within a site's radius; anywhere
    if no sites are given) a fix starts a burst with probability `burst_p`; the burst
    shifts 1-5 consecutive fixes by 50-150 m in one direction, and the receiver notices
    only partly (acc grows by `acc_factor`). On a grid `stretch` times denser than the
    fix interval those figures are given for (an obedient tag's, sampled every 15 s), a
    burst starts with probability burst_p / stretch per fix and shifts stretch x 1-5
    fixes: bursts keep their rate and duration in seconds, not their fix count."""

    base: NoiseModel = field(default_factory=GaussMarkovNoise)
    sites: tuple[tuple[float, float, float], ...] = ()  # (x, y, radius) in the track's frame
    burst_p: float = 0.03
    offset_m: tuple[float, float] = (50.0, 150.0)
    length: tuple[int, int] = (1, 5)
    acc_factor: tuple[float, float] = (1.0, 2.5)
    stretch: int = 1

    def _near(self, x: float, y: float) -> bool:
        if not self.sites:
            return True
        return any(math.hypot(x - sx, y - sy) <= r for sx, sy, r in self.sites)

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> Perturbed:
        ox, oy, acc, src = self.base.perturb(rng, t, x, y)
        ox, oy, acc = ox.copy(), oy.copy(), acc.copy()
        u = rng.random(len(t))
        p = self.burst_p / self.stretch
        i = 0
        while i < len(t):
            if src[i] == "gps" and u[i] < p and self._near(float(x[i]), float(y[i])):
                n = int(rng.integers(self.length[0], self.length[1] + 1)) * self.stretch
                ang = rng.uniform(0.0, 2.0 * math.pi)
                mag = rng.uniform(*self.offset_m)
                for j in range(i, min(i + n, len(t))):
                    wobble = rng.uniform(0.8, 1.2)
                    ox[j] += mag * wobble * math.cos(ang)
                    oy[j] += mag * wobble * math.sin(ang)
                    acc[j] *= rng.uniform(*self.acc_factor)
                i += n
            else:
                i += 1
        return ox, oy, acc, src


@dataclass(frozen=True)
class WildJumps:
    """Rare single wild fixes on top of `base`: with probability `p` a fix lands 300-2000 m
    from the truth, reporting an ordinary, confident-looking acc (p / stretch per fix on a
    grid `stretch` times denser: the same rate in time)."""

    base: NoiseModel = field(default_factory=GaussMarkovNoise)
    p: float = 0.005
    distance_m: tuple[float, float] = (300.0, 2000.0)
    acc_m: tuple[float, float] = (8.0, 30.0)
    stretch: int = 1

    def perturb(
        self, rng: np.random.Generator, t: FloatArray, x: FloatArray, y: FloatArray
    ) -> Perturbed:
        ox, oy, acc, src = self.base.perturb(rng, t, x, y)
        ox, oy, acc = ox.copy(), oy.copy(), acc.copy()
        for i in np.flatnonzero(rng.random(len(t)) < self.p / self.stretch).tolist():
            ang = rng.uniform(0.0, 2.0 * math.pi)
            d = rng.uniform(*self.distance_m)
            ox[i], oy[i] = x[i] + d * math.cos(ang), y[i] + d * math.sin(ang)
            acc[i] = rng.uniform(*self.acc_m)
        return ox, oy, acc, src


def on_dense_grid(noise: NoiseModel, m: int) -> NoiseModel:
    """`noise` for the same device sampled m times as often: the Gauss-Markov error is
    already defined in time; bursts and wild jumps keep their rate and duration in seconds
    (`stretch`); per-fix shares (wifi, cell fallback) stay per fix. m = 1: `noise` itself."""
    if m == 1:
        return noise
    if isinstance(noise, MultipathNoise | WildJumps):
        return replace(noise, base=on_dense_grid(noise.base, m), stretch=noise.stretch * m)
    if isinstance(noise, SourceMix):
        return replace(noise, gps=on_dense_grid(noise.gps, m))
    return noise


# Named presets the families use; each is a plain NoiseModel and can be swapped.
OPEN_SKY: NoiseModel = GaussMarkovNoise(sigma_m=(3.0, 10.0), tau_s=(30.0, 120.0))
STREET: NoiseModel = GaussMarkovNoise(sigma_m=(4.0, 15.0), tau_s=(30.0, 300.0))
URBAN: NoiseModel = GaussMarkovNoise(sigma_m=(5.0, 30.0), tau_s=(30.0, 300.0))
PHONE: NoiseModel = SimpleGpsNoise(4.0, (5.0, 25.0))
# Urban canyon (issue 15): beside tall buildings the error is large (12-25 m per axis),
# drifts slowly (correlated over 2-10 minutes), and most receivers report a radius smaller
# than the error they deliver; on top, multipath bursts shift 2-4 consecutive fixes 30-80 m
# together. `--noise canyon`; the families in devices/families/urban.py use it.
CANYON_GPS: NoiseModel = GaussMarkovNoise(
    sigma_m=(12.0, 25.0), tau_s=(120.0, 600.0), optimistic_p=0.7, optimism=(0.5, 0.8)
)
CANYON: NoiseModel = MultipathNoise(
    CANYON_GPS, burst_p=0.01, offset_m=(30.0, 80.0), length=(2, 4), acc_factor=(1.0, 1.5)
)

# By name, for the command line and scenario files
PRESETS: dict[str, NoiseModel] = {
    "open_sky": OPEN_SKY,
    "street": STREET,
    "urban": URBAN,
    "canyon": CANYON,
    "phone": PHONE,
    "simple": SimpleGpsNoise(),
    "none": SimpleGpsNoise(0.0, (5.0, 5.0)),
}
