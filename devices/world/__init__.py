"""The simulated city: streets, zones, subjects and victims, and the files that describe them."""
