"""Shared config sections. Each config file's `get_config()` starts from these and overrides fields."""

import ml_collections as mlc


def spade_model(**overrides) -> mlc.ConfigDict:
    """SPADE's defaults (options/base_options.py, train_options.py)."""
    m = mlc.ConfigDict(dict(
        name="spade", ngf=64, ndf=64, num_upsampling_layers="normal", use_vae=False, z_dim=256,
        spectral_g=True, spade_norm="batch", spade_hidden=128, spade_kernel=3,
        num_D=2, n_layers_D=4, spectral_d=True, norm_d="instance", legacy_d_strides=False,
        encoder_input_size=256))
    m.update(overrides)
    return m
