"""Performance measurements (not timed tests): each module has ``main(argv) -> int`` and prints medians."""
