"""Simulated device health: battery, tamper, coverage and its ground truth."""
