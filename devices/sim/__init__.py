"""Running a simulation: fleet runs to files, the live publisher, delivery and rate commands."""
