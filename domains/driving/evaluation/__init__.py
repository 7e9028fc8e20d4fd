"""Driving evaluation: nuScenes submission export and DetectionEval scoring."""
