"""tagwatch zones: load, validate and compile zone geometry; numba geofence kernels."""
