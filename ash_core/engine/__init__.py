"""Exact evaluation of a setting on a bundle's features, and the machinery it shares with the score cube."""
