"""Downstream SpaceEvo stage: quantised weight-sharing supernet training and subnet extraction."""
