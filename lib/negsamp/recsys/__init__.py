"""Recommender models, implicit-feedback simulators and their losses."""
