"""The named, versioned evaluation protocols: every choice that changes a published number, written down.

- `scenes-v1` runs on any fresh machine, with the embedded networks, stated as such (see `scenes_v1`).
- `spade-cityscapes-v1`, `spade-ade20k-v1`, `spade-coco-v1`: FID and KID with the FID InceptionV3 on the
  validation set, at the model's resolution (see `fid_v1`), and mIoU and pixel accuracy of the generated and of
  the real validation images with the papers' segmenters: DRN-D-105 (Cityscapes, 19 trainIds, mIoU over classes
  in labels or predictions), UPerNet-R101 (ADE20K, mit-semseg's 5 sizes, mIoU over all 150 classes) and
  DeepLabV2-R101 MSC (COCO-Stuff, mIoU over the classes present in the labels) (see `segmentation`). The
  segmentation resolution is a named choice, `segmentation_resolution`: "generated" (default; the model's size,
  labels nearest-resized, as CC-FPSE's authors did) or "native" (the images upsampled to the original label
  size). A missing segmenter file does not make the protocol unavailable: FID/KID run, and the results say that
  mIoU is unavailable and name the file.
- `cimle-diversity-v1`: LPIPS v0.1 (AlexNet) diversity of K samples per validation layout, for any dataset
  (see `diversity_v1`).
- `smis-diversity-v1`: SMIS's mCSD / mOCD (spatial LPIPS inside and outside a class when only that class's code
  is resampled) for a model with per-class codes drawn from a prior, on any dataset (see `class_diversity_v1`).
- `any-v1`: a model of any dataset (custom folders included) on any machine: FID/KID with the FID Inception when
  its file is found, else the embedded HED VGG-16 stand-in (the results say which), class-colour error, and
  diversity for stochastic models (LPIPS when its files are found, else the embedded stand-in) (see `any_v1`).

A protocol's fields are copied into every results.json; a field overridden on the command line is marked there.
"""

from __future__ import annotations

import dataclasses
import os


class OptionError(ValueError):
    """An unknown protocol, an option it does not take or a value out of range, or a model it does not evaluate."""


class ProtocolUnavailable(RuntimeError):
    """A named protocol that cannot run here: its files are missing."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    runner: str  # "scenes", "fid", "diversity", "class_diversity" or "any"
    dataset: str  # the dataset the model must have been trained on; "any" takes the model's own
    real_images: int | None  # validation layouts (and real images) used; None = the whole validation split
    samples_per_layout: int
    feature_network: str
    resize: str
    segmenter: str
    diversity_layouts: int = 0
    real_set: str = "the validation split through the dataset's eval preprocessing, at the model's resolution"
    quantisation: str = "generated and real images quantised to uint8, as saved PNGs"
    segmentation_resolution: str = "the model's resolution, labels nearest-resized"  # spade-*: "generated"|"native"
    seed: int = 0
    kid_subset_size: int = 1000  # capped at half the set, so that subsets differ
    min_class_fraction: float = 0.0  # smis-diversity-v1: the share of a layout a class must cover to be scored


def _standard(dataset: str, segmenter: str) -> Protocol:
    return Protocol(f"spade-{dataset.replace('_stuff', '')}-v1", "fid", dataset, None, 1, "fid-inception-v3",
                    "pytorch-fid", segmenter, segmentation_resolution="generated")


PROTOCOLS = {p.name: p for p in (
    Protocol("scenes-v1", "scenes", "scenes", real_images=200, samples_per_layout=9, diversity_layouts=20,
             feature_network="hed-vgg16-relu5_3-avg (embedded stand-in for FID Inception)",
             resize="none (the model's resolution)", segmenter="scenes-segmenter-v1",
             real_set="the first validation scenes, rendered at the model's resolution",
             quantisation="generated images quantised to uint8; real scenes are rendered as uint8",
             kid_subset_size=100),
    _standard("cityscapes", "drn-d-105 (fyu/drn DRNSeg, drn-d-105_ms_cityscapes.pth), single scale, 19 trainIds "
                            "(labelIds through the standard table, others ignored); mIoU over the classes in the "
                            "labels or the predictions (segment.py, = cityscapesscripts)"),
    _standard("ade20k", "upernet-r101 (mit-semseg UPerNet ResNet-101, ade20k-resnet101-upernet/{encoder,decoder}_"
                        "epoch_50.pth), PIL-bilinear to short sides 300, 375, 450, 525, 600 (multiples of 32), "
                        "probabilities averaged, 150 classes (raw 0 ignored); mIoU over all 150, I / (U + 1e-10) "
                        "(mit-semseg)"),
    _standard("coco_stuff", "deeplabv2-r101 (kazuto1011/deeplab-pytorch MSC, deeplabv2_resnet101_msc-cocostuff164k-"
                            "100000.pth), 182 ids (255 ignored); mIoU over the classes present in the labels "
                            "(libs/utils/metric.py)"),
    Protocol("cimle-diversity-v1", "diversity", "any", real_images=None, samples_per_layout=10,
             diversity_layouts=100, feature_network="lpips-v0.1-alex", resize="none (the model's resolution)",
             segmenter="none", real_set="the first validation layouts (no real images are used)"),
    Protocol("smis-diversity-v1", "class_diversity", "any", real_images=None, samples_per_layout=5,
             diversity_layouts=50, feature_network="lpips-v0.1-alex, spatial", resize="none (the model's resolution)",
             segmenter="none", real_set="the first validation layouts (no real images are used)",
             min_class_fraction=0.01),
    Protocol("any-v1", "any", "any", real_images=None, samples_per_layout=10, diversity_layouts=20,
             feature_network="fid-inception-v3 when pt_inception-2015-12-05-6726825d.pth is found, else "
                             "hed-vgg16-relu5_3-avg (embedded stand-in); the results name the one used",
             resize="pytorch-fid (the Inception; or clean), none (the stand-in, at the model's resolution)",
             segmenter="none (no segmenter for an arbitrary dataset: mIoU and pixel accuracy unavailable)"),
)}

def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise OptionError(f"unknown protocol {name!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def check_dataset(protocol: Protocol, dataset: str) -> None:
    if protocol.dataset not in ("any", dataset):
        raise OptionError(f"protocol {protocol.name} evaluates {protocol.dataset} models; this model was trained on "
                         f"{dataset!r}")


def missing_requirements(protocol: Protocol, dataset: str, data_root: str | None, weights: bool = True) -> list[str]:
    """What a protocol needs and cannot find (dataset; weight files unless `weights` is False), by name. A
    standard protocol's segmenter file is not among them: without it FID/KID still run and the results name it."""
    from synth.pretrained import files, inception, lpips
    missing = []
    if dataset != "scenes" and (not data_root or not os.path.isdir(data_root)):
        missing.append(f"the {dataset} dataset (pass --data_root, or set data.root in the config; got {data_root!r})")
    if not weights:
        needed = []
    elif protocol.runner == "fid":
        needed = [lambda: files.locate(inception.INCEPTION_FID_WEIGHTS)]
    elif protocol.runner in ("diversity", "class_diversity"):
        needed = [lambda: files.locate(lpips.BACKBONE_FILES["alex"]), lambda: lpips.locate_linear("alex")]
    else:
        needed = []
    for locate in needed:
        try:
            locate()
        except files.MissingWeightsError as e:
            missing.append(str(e))
    return missing
