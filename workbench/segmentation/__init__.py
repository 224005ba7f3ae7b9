"""Lung, lesion and heart segmentation. Each step is one call: ``segment_x(ct, ...) -> labels``."""
