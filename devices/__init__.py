"""tagwatch devices: seeded tag and victim-phone simulators."""
