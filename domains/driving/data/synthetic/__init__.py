"""A generated nuScenes-format database (tables, LiDAR sweeps, six camera JPEGs) for tests,
demos and CI: ``make_synthetic_nuscenes(out, scenes, samples_per_scene)``, or
``python tools/misc/make_synthetic.py driving --out DIR --scenes N --samples-per-scene M``."""
from .generator import GENERATOR_JSON, GENERATOR_VERSION, TRUTH_JSON, make_synthetic_nuscenes

__all__ = ["GENERATOR_JSON", "GENERATOR_VERSION", "TRUTH_JSON", "make_synthetic_nuscenes"]
