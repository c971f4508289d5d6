"""Provider sensors."""
