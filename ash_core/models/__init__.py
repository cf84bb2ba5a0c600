"""Network architectures that extraction loads and that "where to ASH" replays after a
layer (no loading, no data: modules only)."""
