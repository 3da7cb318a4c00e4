"""Conditional IMLE's warm start from a pretrained CRN (no noise) -> variables of our `CRNGenerator` with noise,
as the official `preprocess_crn_model.py` builds `gta_pretrained/` for `train.py` to load.

What the official script does (line numbers of zth667/Diverse-Image-Synthesis-from-Semantic-Layout
`preprocess_crn_model.py`):

- The CRN head `g_256_conv100` has 27 channels = 9 images. Its forward (lines 22-25) transposes to
  [C, H, W, N], splits C into 3 blocks of 9 and concatenates the blocks as R, G, B, so image i is head
  channels (i, 9 + i, 18 + i). The script keeps image 0: `weights[..., (0, 9, 18)]`, `biases[(0, 9, 18),]`
  (lines 66-67).
- Every `g_<sp>_conv1/weights`, sp = 4 ... 256 (lines 117-120), gets `num_noise` input channels appended *after*
  the existing ones (`np.concatenate(..., axis=2)`, line 124), drawn as
  `np.random.randn(kh, kw, num_noise, out) * stv * 5` (line 123) with `stv = sqrt(sum(W**2) / W.size)`
  (line 122): the root mean square of W, not its standard deviation (the mean is not subtracted).
- The appended channels line up with the code because the script feeds the CRN a label of 20 + num_noise
  channels (line 105), so each conv1 sees [upsampled previous, label, noise] (sp > 4) or [label, noise] (sp = 4),
  the order in which `train.py` (lines 59, 63) and our `RefinementModule` concatenate [previous, label, code].
  In `train.py` the appended rows therefore weight the *encoded* code.
- The noise encoder is not in the warm-start checkpoint: `train.py` restores everything but `g_noise*`
  (line 152) and initialises the encoder afresh (truncated normal, std 0.15, lines 72-78), as our
  `NoiseEncoder` does.
All the other variables (conv2 kernels, every LayerNorm) are copied unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synth.convert.cimle_tf import generator_variables, load_checkpoint, model_from_checkpoint
from synth.models.crn import CRNGenerator, NoiseEncoder

NOISE_ROW_SCALE = 5.0  # preprocess_crn_model.py:123


def head_channels(out_channels: int, image: int = 0) -> tuple[int, int, int]:
    """Head channels of RGB image `image` in a CRN head of 3 * images channels: (i, n + i, 2n + i)."""
    if out_channels % 3:
        raise ValueError(f"A CRN head has 3 * images channels; this one has {out_channels}.")
    n = out_channels // 3
    if not 0 <= image < n:
        raise ValueError(f"output_image {image} is out of range: the head holds {n} image(s).")
    return image, n + image, 2 * n + image


def _resolve(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        import tensorflow as tf  # noqa: PLC0415 (lazy, as in cimle_tf)

        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"No TensorFlow checkpoint in {path}.")
        return latest
    return path


def _check_crn(variables: Mapping[str, Any]) -> None:
    """Names the variables a no-noise CRN checkpoint lacks (or has in excess) before anything is read."""
    if any(k.startswith("g_noise") for k in variables):
        raise ValueError("The checkpoint already has a noise encoder (g_noise_*): it is a conditional IMLE model, "
                         "not a CRN; convert it with synth.convert.cimle_tf.generator_variables.")
    heights = sorted(int(m.group(1)) for k in variables if (m := re.fullmatch(r"g_(\d+)_conv1/weights", k)))
    if not heights:
        raise ValueError("No g_<h>_conv1/weights in the checkpoint: is it a CRN generator?")
    expected = [heights[0] * 2 ** k for k in range(len(heights))]
    if heights != expected:
        raise ValueError(f"The CRN modules' heights {heights} do not double from {heights[0]} to {heights[-1]}.")
    top = heights[-1]
    required = [f"g_{h}_conv{i}/weights" for h in heights for i in (1, 2)]
    required += [f"g_{top}_conv100/weights", f"g_{top}_conv100/biases"]
    missing = [k for k in required if k not in variables]
    if missing:
        raise ValueError(f"The CRN checkpoint lacks {len(missing)} variable(s): {', '.join(missing)}.")
    w, b = np.shape(variables[f"g_{top}_conv100/weights"]), np.shape(variables[f"g_{top}_conv100/biases"])
    width = np.shape(variables[f"g_{top}_conv2/weights"])[-1]
    if len(w) != 4 or w[:3] != (1, 1, width) or b != (w[3],):
        raise ValueError(f"g_{top}_conv100 is not a 1x1 head on {width} features: weights {w}, biases {b}.")


def warm_start_model(crn: CRNGenerator | Mapping[str, Any], *, num_noise: int = 10, noise_width: int = 100,
                     width: int | None = None) -> CRNGenerator:
    """The conditional IMLE generator a CRN (model, or its checkpoint variables) warm-starts: same cascade,
    one RGB image out, `num_noise` code channels."""
    if not isinstance(crn, CRNGenerator):
        _check_crn(crn)
        crn = model_from_checkpoint(crn, width)
    return dataclasses.replace(crn, num_noise=num_noise, noise_width=noise_width, out_channels=3)


def warm_start_variables(crn_checkpoint: str | os.PathLike | Mapping[str, Any], *, num_noise: int = 10,
                         noise_width: int = 100, seed: int | np.random.Generator = 0, output_image: int = 0,
                         width: int | None = None) -> tuple[dict, dict]:
    """CRN checkpoint without noise (path to a TF checkpoint or its directory, or a dict name -> array) ->
    ({"params": ...} of `warm_start_model(...)`, provenance).

    Keeps head image `output_image` (official: 0, channels 0, 9, 18 of a 27-channel head), appends `num_noise`
    input channels ~ N(0, 1) * 5 * RMS(W) to every module's conv1 kernel W (after the existing ones, where our
    RefinementModule concatenates the code), and adds a freshly initialised noise encoder (`NoiseEncoder`'s
    init). `seed` (or a numpy Generator) draws both the extra rows and the encoder. `width`: the image width the
    model is built for (default twice the height, the official aspect ratio; the variables do not depend on it).
    """
    if num_noise < 0:
        raise ValueError(f"num_noise must be >= 0, got {num_noise}.")
    if isinstance(crn_checkpoint, Mapping):
        source, variables = "<dict>", crn_checkpoint
    else:
        source = _resolve(crn_checkpoint)
        variables = load_checkpoint(source)
    _check_crn(variables)
    crn = model_from_checkpoint(variables, width)
    head = f"g_{crn.height}_conv100"
    kept = head_channels(crn.out_channels, output_image)

    sliced = dict(variables)
    sliced[f"{head}/weights"] = np.asarray(variables[f"{head}/weights"])[..., kept]
    sliced[f"{head}/biases"] = np.asarray(variables[f"{head}/biases"])[list(kept)]
    plain = dataclasses.replace(crn, out_channels=3)
    params = generator_variables(sliced, plain)["params"]  # names missing / unused / misshapen variables

    first = f"refine_{plain.height >> (len(plain.widths) - 1)}"
    semantic_nc = int(params[first]["conv1"]["conv"]["kernel"].shape[2])

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    model = warm_start_model(plain, num_noise=num_noise, noise_width=noise_width)
    rms = {}
    if num_noise:
        for name in sorted((k for k in params if k.startswith("refine_")), key=lambda k: int(k.split("_")[1])):
            conv = params[name]["conv1"]["conv"]
            w = np.asarray(conv["kernel"], np.float64)
            r = float(np.sqrt(np.mean(w ** 2)))  # preprocess_crn_model.py:122 (RMS, not std)
            rms[f"g_{name.removeprefix('refine_')}_conv1/weights"] = r
            extra = rng.standard_normal((*w.shape[:2], num_noise, w.shape[3])) * r * NOISE_ROW_SCALE
            conv["kernel"] = jnp.asarray(np.concatenate([w, extra], axis=2), conv["kernel"].dtype)
        key = jax.random.key(int(rng.integers(2 ** 31)))
        params["noise_encoder"] = NoiseEncoder(num_noise, noise_width).init(
            {"params": key}, jnp.zeros((1, 1, 1, semantic_nc)), jnp.zeros((1, 1, 1, num_noise)))["params"]

    # The result must be exactly the tree the model's init would give.
    seg = jax.ShapeDtypeStruct((1, model.height, model.width, semantic_nc), jnp.float32)
    noise = jax.ShapeDtypeStruct((1, model.height, model.width, num_noise), jnp.float32) if num_noise else None
    want = jax.eval_shape(lambda s, z: model.init({"params": jax.random.key(0)}, s, z), seg, noise)["params"]
    got = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    if jax.tree.structure(got) != jax.tree.structure(dict(want)) or jax.tree.leaves(got) != jax.tree.leaves(want):
        raise AssertionError("warm start built a parameter tree that differs from CRNGenerator.init's")

    provenance = {
        "source": source,
        "head": head,
        "head_out_channels": crn.out_channels,
        "output_image": output_image,
        "head_channels_kept": kept,
        "num_noise": num_noise,
        "noise_rows": f"N(0,1) * {NOISE_ROW_SCALE:g} * RMS(conv1 kernel), appended after the input channels",
        "conv1_rms": rms,
        "noise_encoder": "fresh NoiseEncoder init (truncated normal, std 0.15)" if num_noise else None,
        "seed": seed if isinstance(seed, int) else None,
    }
    return {"params": params}, provenance


__all__ = ["head_channels", "warm_start_model", "warm_start_variables"]
