"""Device health: tamper, silence, no location, battery (see monitor.py for the rules)."""
