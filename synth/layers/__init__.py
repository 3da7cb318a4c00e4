"""Building blocks shared by the SPADE family: resampling, param-free norms, spectral-norm convs, SPADE."""

from synth.layers.conv import Conv, Dense, spade_init
from synth.layers.norms import BatchNorm, instance_norm
from synth.layers.resample import (avg_pool_exclude_pad, bilinear_resize, nearest_resize, upsample_nearest_2x)
from synth.layers.spade import SPADE

__all__ = ["BatchNorm", "Conv", "Dense", "SPADE", "avg_pool_exclude_pad", "bilinear_resize", "instance_norm",
           "nearest_resize", "spade_init", "upsample_nearest_2x"]
