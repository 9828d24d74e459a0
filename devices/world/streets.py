"""A seeded street-like network (jittered grid plus diagonal arterials) and A* routing."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class StreetNetwork:
    """Street graph in the city's metric frame: nodes are junctions, edges are streets."""

    nodes: FloatArray  # (n, 2) x, y metres
    edges: IntArray  # (m, 2) node indices
    arterial: BoolArray  # (m,) main road (faster when driving)
    half_size: float  # the network covers [-half_size, half_size]^2
    adjacency: list[list[tuple[int, int]]] = field(repr=False)  # node -> [(neighbour, edge)]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)  # derived, built lazily

    @property
    def length(self) -> FloatArray:
        a, b = self.nodes[self.edges[:, 0]], self.nodes[self.edges[:, 1]]
        return np.hypot(*(b - a).T)

    def edge_lines(self) -> NDArray[np.object_]:
        """Edges as shapely LineStrings (built once)."""
        if "lines" not in self._cache:
            coords = np.stack([self.nodes[self.edges[:, 0]], self.nodes[self.edges[:, 1]]], 1)
            self._cache["lines"] = shapely.linestrings(coords)
        return self._cache["lines"]  # type: ignore[no-any-return]

    def xy_lists(self) -> tuple[list[float], list[float]]:
        """Node coordinates as Python lists (fast scalar access in the router; built once)."""
        if "xy" not in self._cache:
            self._cache["xy"] = (self.nodes[:, 0].tolist(), self.nodes[:, 1].tolist())
        return self._cache["xy"]  # type: ignore[no-any-return]

    def nearest(self, x: float, y: float, allowed: BoolArray | None = None, k: int = 8) -> IntArray:
        """Up to k nearest node indices (optionally only allowed ones), nearest first."""
        d2 = (self.nodes[:, 0] - x) ** 2 + (self.nodes[:, 1] - y) ** 2
        if allowed is not None:
            d2 = np.where(allowed, d2, np.inf)
        k = min(k, len(d2))
        idx = np.argpartition(d2, k - 1)[:k]
        idx = idx[np.argsort(d2[idx], kind="stable")]
        return idx[np.isfinite(d2[idx])]

    def shortest_path(
        self, src: int, dst: int, cost: list[float], blocked: list[bool], v_max: float
    ) -> list[int] | None:
        """A* from src to dst; `cost` is seconds per edge; blocked edges are never used."""
        if src == dst:
            return [src]
        xs, ys = self.xy_lists()
        tx, ty = xs[dst], ys[dst]
        best = {src: 0.0}
        prev: dict[int, int] = {}
        heap: list[tuple[float, float, int]] = [(0.0, 0.0, src)]
        closed: set[int] = set()
        adjacency = self.adjacency
        while heap:
            _, g, u = heapq.heappop(heap)
            if u == dst:
                path = [u]
                while u in prev:
                    u = prev[u]
                    path.append(u)
                return path[::-1]
            if u in closed:
                continue
            closed.add(u)
            for v, e in adjacency[u]:
                if blocked[e] or v in closed:
                    continue
                ng = g + cost[e]
                if ng < best.get(v, math.inf):
                    best[v] = ng
                    prev[v] = u
                    h = math.hypot(xs[v] - tx, ys[v] - ty) / v_max
                    heapq.heappush(heap, (ng + h, ng, v))
        return None


def _grid_axis(rng: np.random.Generator, half: float, block: tuple[float, float]) -> FloatArray:
    pos = [-half]
    while pos[-1] < half:
        pos.append(pos[-1] + rng.uniform(*block))
    return np.asarray(pos)


def _largest_component(n: int, edges: IntArray) -> BoolArray:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    roots = np.array([find(i) for i in range(n)])
    counts = np.bincount(roots, minlength=n)
    return roots == int(np.argmax(counts))


def build_streets(
    rng: np.random.Generator,
    half_size: float,
    block: tuple[float, float] = (100.0, 150.0),
    jitter_m: float = 8.0,
    drop_fraction: float = 0.06,
) -> StreetNetwork:
    """A jittered grid of `block`-sized blocks with a few diagonal arterials across it."""
    xs, ys = _grid_axis(rng, half_size, block), _grid_axis(rng, half_size, block)
    nx, ny = len(xs), len(ys)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    nodes = np.stack([gx.ravel(), gy.ravel()], 1)
    nodes += np.clip(rng.normal(0.0, jitter_m, nodes.shape), -2.5 * jitter_m, 2.5 * jitter_m)
    ids = np.arange(nx * ny).reshape(nx, ny)
    edges = np.concatenate(
        [
            np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()], 1),
            np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()], 1),
        ]
    )
    edges = edges[rng.random(len(edges)) >= drop_fraction]  # merged blocks, dead ends
    arterial = np.zeros(len(edges), dtype=bool)

    node_list, edge_list, art_list = [nodes], [edges], [arterial]
    n_total = len(nodes)
    for _ in range(int(rng.integers(3, 6))):
        angle = rng.choice([1.0, -1.0]) * rng.uniform(math.radians(25), math.radians(65))
        angle += rng.choice([0.0, math.pi / 2])
        c = rng.uniform(-half_size / 2, half_size / 2, 2)
        d = np.array([math.cos(angle), math.sin(angle)])
        s = np.arange(-3 * half_size, 3 * half_size, rng.uniform(120.0, 170.0))
        pts = c + s[:, None] * d
        pts = pts[(np.abs(pts) <= half_size).all(1)]
        if len(pts) < 4:
            continue
        new_ids = np.arange(n_total, n_total + len(pts))
        chain = np.stack([new_ids[:-1], new_ids[1:]], 1)
        links = []
        for i, p in zip(new_ids, pts, strict=True):
            d2 = ((nodes - p) ** 2).sum(1)
            for j in np.argsort(d2)[:2]:
                links.append((i, int(j)))
        node_list.append(pts)
        edge_list += [chain, np.asarray(links, dtype=np.int64)]
        art_list += [np.ones(len(chain), dtype=bool), np.zeros(len(links), dtype=bool)]
        n_total += len(pts)

    all_nodes = np.concatenate(node_list)
    all_edges = np.concatenate(edge_list).astype(np.int64)
    all_art = np.concatenate(art_list)
    keep = _largest_component(len(all_nodes), all_edges)
    remap = np.cumsum(keep) - 1
    ok = keep[all_edges[:, 0]] & keep[all_edges[:, 1]]
    all_edges = remap[all_edges[ok]]
    all_art = all_art[ok]
    all_nodes = all_nodes[keep]
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(len(all_nodes))]
    for e, (a, b) in enumerate(all_edges.tolist()):
        adjacency[a].append((b, e))
        adjacency[b].append((a, e))
    return StreetNetwork(all_nodes, all_edges, all_art, half_size, adjacency)
