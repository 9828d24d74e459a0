"""Scenario files (TOML): parse, load and run scripted timelines; named presets."""
