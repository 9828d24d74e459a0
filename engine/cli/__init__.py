"""The command line: commands, the demo, terminal output and progress."""
