"""The numba geofence kernels, one concern a module; callers import from the submodules.

- `frame`: the Earth in metres: each zone's local frame (`project`), the seam, haversine.
- `arrays`: `ZoneArrays`, the compiled zone table as every kernel takes it (one argument).
- `distance`: point- and segment-to-zone distances, the polygon ring walk, circles.
- `depth`: how deep a segment runs inside a zone, and where it enters and leaves.

A package, not four flat modules in zones/: everything here is raw @njit code over arrays
(no validation; `zones.geofence` is the public, checked API), and it reads as one room.

Editing: numba's on-disk cache (`cache=True`, `zones.jit`) notices a change only in the
file a kernel is defined in, yet a cached kernel holds the code of every kernel it calls.
After editing `frame.py` or `distance.py`, delete zones/kernels/__pycache__ (or `make
clean`) so `depth` and `distance` are compiled again; tests and benchmarks otherwise run
the old helpers.
"""
