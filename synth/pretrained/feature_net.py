"""The fixed feature networks that training losses use (the perceptual loss, IMLE's distance): a VGG variant's
Flax module and variables, with a note whenever it is not the paper's network."""

from __future__ import annotations

import logging

import jax

from synth.pretrained import vgg

log = logging.getLogger("synth")


def _warn(note: str) -> None:
    log.warning("!" * 78 + "\n" + note.upper() + "\n" + "!" * 78)


def load_feature_net(name: str, path: str | None, layers: tuple[str, ...], *, role: str, paper_network: str):
    """(module, variables, note) of the VGG variant `name` for `role`; the note says when it is not `paper_network`.

    name 'random' keeps the paper's trunk structure (`paper_network` variant) with random weights."""
    if name == "random":
        note = f"{role} used a randomly initialised {paper_network} VGG, not the paper's pretrained one"
        _warn(note)
        variant = vgg.get_variant(paper_network)
        last = max(layers, key=vgg.layer_names(variant.depth).index)
        trunk = vgg.random_variables(jax.random.key(1234), paper_network, last)
        return vgg.VGGFeatures(paper_network, layers), vgg.features_variables(trunk), note
    variant = vgg.get_variant(name)
    converted = vgg.load(name, path or None)
    note = None
    if variant.stands_in:
        note = (f"{role} used the {variant.weights_file.description} ({converted.source}) in place of "
                f"the paper's {paper_network} VGG-19")
        _warn(note)
    log.info("%s: VGG variant %s from %s (sha256 %s)", role, name, converted.source, converted.source_sha256[:12])
    return vgg.VGGFeatures(name, layers), vgg.features_variables(converted.variables), note


def perceptual_feature_net(loss_config):
    """The perceptual loss's network of a `config.loss` section (None when lambda_vgg is 0): (module, variables,
    note)."""
    if not loss_config.lambda_vgg:
        return None, None, None
    layers = tuple(loss_config.get("vgg_layers", vgg.VGG19_PERCEPTUAL_LAYERS))
    return load_feature_net(loss_config.get("vgg", "torchvision"), loss_config.get("vgg_path"), layers,
                            role="perceptual loss", paper_network="torchvision")
