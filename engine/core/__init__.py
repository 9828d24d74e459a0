"""The decision core: arrays in, alert records out; no network, no disk."""
