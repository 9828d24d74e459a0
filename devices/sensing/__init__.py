"""What a tag's receiver makes of the true path: sampling and GPS error models."""
