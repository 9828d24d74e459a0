"""The numba geofence kernels, one concern a module; callers import from the submodules.

- `frame`: the Earth in metres: each zone's local frame (`project`), the seam, haversine.
- `arrays`: `ZoneArrays`, the compiled zone table as every kernel takes it (one argument).
- `distance`: point- and segment-to-zone distances, the polygon ring walk, circles.
- `depth`: how deep a segment runs inside a zone, and where it enters and leaves.

A package, not four flat modules in zones/: everything here is raw @njit code over arrays
(no validation; `zones.geofence` is the public, checked API), and it reads as one room.
"""
