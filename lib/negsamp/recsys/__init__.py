"""Recommender models, losses, simulators and data splits for the collaborative-filtering chapters."""
