"""Shared config pieces: the one argument parser every `get_config(arg)` uses, and SPADE's model section."""

import ml_collections as mlc

_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def parse_arg(arg: str | None, **spec) -> mlc.ConfigDict:
    """The `:arg` of `--config file.py:arg` as a ConfigDict typed by `spec` (big_vision's `parse_arg`).

    `spec` names every argument with its default. `name=value` sets it, converted to the default's type;
    a bare `name` sets a bool argument True and `no<name>` sets it False. Arguments are comma separated, e.g.
    `root=/data/cityscapes,vae`. An unknown name or a value of the wrong type is a ValueError that lists
    what the config takes.
    """
    out = mlc.ConfigDict(dict(spec))
    takes = ", ".join(f"{k}={v!r}" if not isinstance(v, bool) else f"[no]{k}" for k, v in spec.items())
    for part in filter(None, (arg or "").split(",")):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep and name not in spec and name.startswith("no") and isinstance(spec.get(name[2:]), bool):
            out[name[2:]] = False
            continue
        if name not in spec:
            raise ValueError(f"Unknown config argument {name!r}; this config takes {takes or 'none'}.")
        default = spec[name]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"Config argument {name!r} needs a value ({name}=...).")
            out[name] = True
        elif isinstance(default, bool):
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"Config argument {name}={value!r} is not a boolean.")
            out[name] = value.lower() in _TRUE
        else:
            try:
                out[name] = type(default)(value)
            except ValueError:
                raise ValueError(f"Config argument {name}={value!r} is not a {type(default).__name__}.") from None
    return out


def data_settings() -> dict:
    """The data fields every dataset shares, at their defaults: `decode` ("python": every file through the checks
    that name bad files; "validated_tf": files validated once, cached, then decoded by TF ops,
    `data_pipelines/fast_decode.py`) and `decode_workers` (parallel decoders; None: the host's cores less two,
    2 to 8)."""
    return dict(decode="python", decode_workers=None)


def exemplar_settings(**overrides) -> dict:
    """`config.data.exemplars` of an exemplar-based system (CoCosNet), at the official training options:
    `real_reference_probability` 0.7 and `hard_reference_probability` 0.2 (data/pix2pix_dataset.py: u < 0.2 takes
    a line's last reference, u < 0.7 its first, else the image itself), the references from an official retrieval
    list (`train_list`, `validation_list`: data/<dataset>_ref[_test].txt) or, where a list is "", from the nearest
    layouts by class histograms (`top_k`, `distance` "l1" or "cosine"), computed once and cached. Its presence makes
    the pipelines add ref_label / ref_image / self_ref (`data_pipelines/exemplars.py`)."""
    fields = dict(train_list="", validation_list="", real_reference_probability=0.7, hard_reference_probability=0.2,
                  top_k=10, distance="l1")
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"exemplar_settings() takes no field {', '.join(unknown)}; its fields are "
                         f"{', '.join(fields)}.")
    fields.update(overrides)
    return fields


def accelerator_settings() -> dict:
    """The train fields that decide how a step uses a device, at their faithful defaults: `precision` ("float32" or
    "bfloat16": `synth.precision`), `remat` ("none", "blocks" or "full": `synth.training.remat`) and `shard_state`
    (the parameters and optimiser state split over the devices: `synth.training.sharding.state_shardings`)."""
    return dict(precision="float32", remat="none", shard_state=False)


def spade_model(**overrides) -> mlc.ConfigDict:
    """SPADE's defaults (options/base_options.py, train_options.py)."""
    m = mlc.ConfigDict(dict(
        name="spade", ngf=64, ndf=64, num_upsampling_layers="normal", use_vae=False, z_dim=256,
        spectral_g=True, spade_norm="batch", spade_hidden=128, spade_kernel=3,
        num_D=2, n_layers_D=4, spectral_d=True, norm_d="instance", legacy_d_strides=False,
        encoder_input_size=256))
    m.update(overrides)
    return m
