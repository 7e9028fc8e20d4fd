"""Factorized spatio-temporal encoder (SkySense): per-date spatial encoders, temporal fusion."""
