"""Driving models (DeepInteraction++ and the LiDAR-only detector)."""
