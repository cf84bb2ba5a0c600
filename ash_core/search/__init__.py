"""Validation search: choosing a method's parameters on validation splits only (OpenOOD's rule)."""
