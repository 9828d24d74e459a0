"""Scenario families for the decisions bench: episodes with ground truth."""
