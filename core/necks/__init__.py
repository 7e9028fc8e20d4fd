"""Necks: generic multi-scale feature aggregation between a backbone and its heads."""
from .feature_pyramid import FeaturePyramidNetwork

__all__ = ["FeaturePyramidNetwork"]
