"""Hydra configuration tree (a package so it is found from an installed wheel too)."""
