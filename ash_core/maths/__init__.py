"""Pure maths on tensors and arrays: shaping, scores, metrics, statistics, curves, the Pareto front. Imports nothing above ``ash_core.errors``."""
