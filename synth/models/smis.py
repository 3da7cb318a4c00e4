"""SMIS / GroupDNet (Zhu et al., "Semantically Multi-modal Image Synthesis", CVPR 2020), as the official code
(Seanseattle/SMIS `models/networks/{generator,architecture,normalization,encoder}.py`, `models/smis_model.py`).

    encoder    per class c: the image masked by c, cropped to c's bounding box, resized (nearest) to the image
               size -> 3 channels per class -> stride-2 3x3 convs grouped by class (spectral norm, InstanceNorm)
               -> grouped 3x3 fc_mu / fc_var: an 8-channel spatial code per class (mu, logvar)
    generator  z [B, classes * 8, sh, sw] -> fc (grouped 3x3) -> head_0 -> up -> G_middle_0 -> [up] -> G_middle_1
               -> up -> up_0 -> up -> up_1 -> up -> up_2 -> up -> up_3 -> lrelu -> conv_img -> tanh
               every block a SPADE residual block with grouped convs (`SPADEV2ResnetBlock`) and grouped SPADE
               MLPs (`GROUP_SPADE`); the number of groups decreases along the decoder (one group per class at the
               head, one group at the end)

The three official generators are one module here, `GroupDecreasingGenerator`, parameterised by `netG`:

* "deepfashion": widths 16, 16, 16, 8, 4, 2, 1 x ngf; groups C, C, C/2, C/2, C/4, C/4, C/8; fc grouped by 8
  (hard-coded in the official code); GROUP_SPADE hidden 128, grouped by the block's groups.
* "cityscapes": the same widths; groups C, C, 20, 14, 10, 4, 1; the layout's instance-edge channel is
  interleaved with every class's one-hot channel ([onehot_c, edge] pairs, 2C channels) for the SPADE MLPs;
  GROUP_SPADE hidden C * groups, every conv grouped by C.
* "ade20k": widths 16C, 32, 16, 16, 8, 4, 2 x ngf (16C after fc); groups C, 16, 16, 8, 4, 2, 1; conv_img from
  2 ngf; GROUP_SPADE hidden 2C (C divisible by the groups) or C * groups, mlp_shared grouped by C, gamma and
  beta by the block's groups. The official module also builds `up_4` (2 ngf -> ngf, one group), which its forward
  never calls; `ade20k_up_4` keeps it (for the official parameter count and a strict conversion), by default it
  is left out (the converter then skips its keys).

C is the number of classes (one-hot channels without the instance-edge channel). `block_groups` replaces the
netG's group counts (a setting with another class count: the official counts are hard-coded for 8, 35 and 151).

Generalised beyond the official code (which runs only at 256x256, Cityscapes 256x512, with 'more' upsampling):
the latent grid is the image size / 2**num_up (official: a hard-coded 4x4 or 4x8), the class crops are resized to
the image size (official: a fixed 256x256 / 256x512), and the encoder has log2(H / sh) layers (official: 6,
its sixth only when crop_size >= 256). At the official sizes all three equal the official values.

The system (`SMISSystem`): this generator, its encoder trained with G (the VAE is always on in the official code),
SPADE's multiscale discriminator (num_D 2, n_layers_D 4), KL summed and weighted by lambda_kld. At inference z is
drawn from N(0, I) (the official `vis_test`); per-class codes [B, C, sh, sw, 8] are the `z` control, so
`synth.generate.resample_classes` redraws the named classes' codes only (the official `--test_mask`).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from synth import config_rules as cc
from synth import losses
from synth.layers import Conv, instance_norm, spade_init, upsample_nearest_2x
from synth.layers.group_spade import MODES, GroupSPADE, hidden_and_groups
from synth.models.base import GANSystem, GeneratorOutput, apply
from synth.models.discriminators import MultiscaleDiscriminator

NUM_UPSAMPLING = {"normal": 5, "more": 6}
ENCODER_NORMS = ("instance", "none")
CODE_CHANNELS = 8  # the official latent: 8 channels per class
BLOCKS = ("head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3")
ENCODER_WIDTHS = {"deepfashion": 256, "cityscapes": 350, "ade20k": 604}  # hard-coded per dataset_mode


def lrelu(x):
    return nn.leaky_relu(x, 0.2)


def latent_size(height: int, width: int, num_upsampling_layers: str) -> tuple[int, int]:
    """(sh, sw): the image size halved num_up times (official: sw = crop // 2**num_up, sh = sw / aspect)."""
    if num_upsampling_layers not in NUM_UPSAMPLING:
        raise ValueError(f"num_upsampling_layers must be one of {sorted(NUM_UPSAMPLING)}, got "
                         f"{num_upsampling_layers!r}.")
    n = 2 ** NUM_UPSAMPLING[num_upsampling_layers]
    if height % n or width % n:
        raise ValueError(f"height and width must be multiples of {n} ({num_upsampling_layers!r} upsampling), "
                         f"got {height}x{width}.")
    return height // n, width // n


def layout(net_g: str, ngf: int, classes: int, block_groups=()) -> dict:
    """The official generator's shape for `net_g`: fc width and groups, each block's (fout, groups), conv_img's
    input width, and whether the GROUP_SPADEs take interleaved instance edges."""
    nf, c = ngf, classes
    if net_g == "deepfashion":
        widths, groups, fc = (16 * nf,) * 3 + (8 * nf, 4 * nf, 2 * nf, nf), \
            (c, c, c // 2, c // 2, c // 4, c // 4, c // 8), (16 * nf, 8)
    elif net_g == "cityscapes":
        widths, groups, fc = (16 * nf,) * 3 + (8 * nf, 4 * nf, 2 * nf, nf), (c, c, 20, 14, 10, 4, 1), (16 * nf, c)
    elif net_g == "ade20k":
        widths, groups, fc = (16 * c, 32 * nf, 16 * nf, 16 * nf, 8 * nf, 4 * nf, 2 * nf), \
            (c, 16, 16, 8, 4, 2, 1), (16 * c, c)
    else:
        raise ValueError(f"netG must be one of {MODES}, got {net_g!r}.")
    if block_groups:
        groups = tuple(int(g) for g in block_groups)
    return {"fc": fc, "widths": widths, "groups": groups, "edges": net_g == "cityscapes"}


def interleave_edges(seg: jnp.ndarray, classes: int) -> jnp.ndarray:
    """[..., C one-hot + 1 edge] -> [..., 2C]: [onehot_c, edge] for every class (the Cityscapes generator's seg)."""
    onehot, edge = seg[..., :classes], seg[..., classes:classes + 1]
    return jnp.stack([onehot, jnp.broadcast_to(edge, onehot.shape)], -1).reshape(*seg.shape[:-1], 2 * classes)


class SPADEV2ResnetBlock(nn.Module):
    """SPADE's residual block with grouped convs (conv_0, conv_1: 3x3; conv_s: 1x1 without bias; all spectral)
    and GROUP_SPADE norms."""

    fout: int
    groups: int
    mode: str
    classes: int
    spectral: bool = True
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, seg, *, use_running_average: bool, update_stats: bool):
        fin = x.shape[-1]
        fmiddle = min(fin, self.fout)
        hidden, shared, out = hidden_and_groups(self.mode, self.classes, self.groups)
        norm = lambda name: GroupSPADE(hidden, shared, out, self.norm, name=name)  # noqa: E731
        conv = lambda f, k, name, **kw: Conv(f, k, spectral=self.spectral, groups=self.groups, name=name, **kw)  # noqa
        kw = dict(use_running_average=use_running_average, update_stats=update_stats)
        if fin != self.fout:
            x_s = conv(self.fout, 1, "conv_s", use_bias=False)(norm("norm_s")(x, seg, **kw), update_stats=update_stats)
        else:
            x_s = x
        dx = conv(fmiddle, 3, "conv_0")(lrelu(norm("norm_0")(x, seg, **kw)), update_stats=update_stats)
        dx = conv(self.fout, 3, "conv_1")(lrelu(norm("norm_1")(dx, seg, **kw)), update_stats=update_stats)
        return x_s + dx


class GroupDecreasingGenerator(nn.Module):
    """The official Cityscapes / ADE20K / DeepFashion generators (`netG`), at any size (see the module doc)."""

    height: int
    width: int
    classes: int
    net_g: str = "deepfashion"
    ngf: int = 160
    num_upsampling_layers: str = "more"
    block_groups: tuple = ()
    ade20k_up_4: bool = False
    spectral: bool = True
    norm: str = "batch"

    @nn.compact
    def __call__(self, seg: jnp.ndarray, z: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        """seg [B, H, W, semantic_nc] (C one-hot channels, then the instance edges with netG 'cityscapes'),
        z [B, sh, sw, 8C] (channel 8c + k: class c's k-th code channel) -> image [B, H, W, 3] in [-1, 1]."""
        if seg.shape[1:3] != (self.height, self.width):
            raise ValueError(f"Layout is {seg.shape[1]}x{seg.shape[2]} but the generator was built for "
                             f"{self.height}x{self.width}.")
        sh, sw = latent_size(self.height, self.width, self.num_upsampling_layers)
        want = (seg.shape[0], sh, sw, CODE_CHANNELS * self.classes)
        if tuple(z.shape) != want:
            raise ValueError(f"z must be {list(want)}, got {list(z.shape)}.")
        shape = layout(self.net_g, self.ngf, self.classes, self.block_groups)
        if shape["edges"]:
            seg = interleave_edges(seg, self.classes)
        kw = dict(use_running_average=not train, update_stats=train)
        block = lambda i: SPADEV2ResnetBlock(shape["widths"][i], shape["groups"][i], self.net_g,  # noqa: E731
                                             self.classes, self.spectral, self.norm, name=BLOCKS[i])
        fc_width, fc_groups = shape["fc"]
        x = Conv(fc_width, 3, groups=fc_groups, name="fc")(z)
        x = block(0)(x, seg, **kw)
        x = upsample_nearest_2x(x)
        x = block(1)(x, seg, **kw)
        if NUM_UPSAMPLING[self.num_upsampling_layers] == 6:
            x = upsample_nearest_2x(x)
        x = block(2)(x, seg, **kw)
        for i in range(3, 7):
            x = upsample_nearest_2x(x)
            x = block(i)(x, seg, **kw)
        if self.net_g == "ade20k" and self.ade20k_up_4 and self.is_initializing():
            # Built by the official ADE20K generator, never called in its forward: parameters only.
            SPADEV2ResnetBlock(self.ngf, 1, self.net_g, self.classes, self.spectral, self.norm, name="up_4")(
                x, seg, **kw)
        x = Conv(3, 3, name="conv_img")(lrelu(x))
        return jnp.tanh(x)


def class_crops(image: jnp.ndarray, onehot: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """The official `trans_img`, vectorised over classes with static shapes: [B, H, W, 3], [B, H, W, C] ->
    [B, *size, 3C] (channels 3c..3c+2: class c).

    For each class, the image masked by the class's one-hot channel; its bounding box from the nonzero row and
    column sums of the masked image's channel sum (so masked pixels whose R+G+B is exactly 0 count as outside,
    as in the official code); the box resized to `size` by torch's nearest rule (source index
    min(floor(i * (float32) in / out), in - 1)) as one gather. A class without pixels gives the whole (all-zero)
    masked image resized, i.e. a zero slot."""
    b, h, w, c = onehot.shape
    f32 = jnp.float32
    onehot = onehot.astype(image.dtype)
    csum = onehot * image.sum(-1, keepdims=True)  # [B, H, W, C]: the masked image's channel sum
    rows, cols = csum.sum(2) != 0, csum.sum(1) != 0  # [B, H, C], [B, W, C]

    def extent(nonzero, n):  # first and last nonzero index along axis 1; the whole axis when none
        idx = jnp.arange(n)[None, :, None]
        present = nonzero.any(1)
        lo = jnp.where(present, jnp.min(jnp.where(nonzero, idx, n), 1), 0)
        hi = jnp.where(present, jnp.max(jnp.where(nonzero, idx, -1), 1), n - 1)
        return lo, hi  # [B, C]

    def index(lo, hi, out):  # [B, C, out]: torch's nearest source index into [lo, hi]
        length = hi - lo + 1
        scale = length.astype(f32) / f32(out)
        i = jnp.floor(jnp.arange(out, dtype=f32)[None, None, :] * scale[..., None]).astype(jnp.int32)
        return lo[..., None] + jnp.minimum(i, length[..., None] - 1)

    present = cols.any(1)  # the official tests the column sums
    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    y0, y1 = jnp.where(present, y0, 0), jnp.where(present, y1, h - 1)
    x0, x1 = jnp.where(present, x0, 0), jnp.where(present, x1, w - 1)
    ri = index(y0, y1, size[0])[:, :, :, None]  # [B, C, S_h, 1]
    ci = index(x0, x1, size[1])[:, :, None, :]  # [B, C, 1, S_w]
    bi = jnp.arange(b)[:, None, None, None]
    ki = jnp.arange(c)[None, :, None, None]
    crops = image[bi, ri, ci] * onehot[bi, ri, ci, ki][..., None]  # [B, C, S_h, S_w, 3]
    return crops.transpose(0, 2, 3, 1, 4).reshape(b, size[0], size[1], 3 * c)


class ClassEncoder(nn.Module):
    """The official `ConvEncoder` of SMIS: class crops [B, H, W, 3C] -> (mu, logvar) [B, sh, sw, 8C]."""

    classes: int
    nef: int = 256
    n_layers: int = 6
    spectral: bool = True
    # "instance": the official (affine-free InstanceNorm after every conv). "none" is a named deviation: the
    # official norm leaves a flat-coloured region one sign per channel about its colour (docs/smis_scenes.md).
    norm: str = "instance"
    # fc_mu's xavier gain. 0.02 is the official (every conv's init): the codes' means then spread ~0.004 against
    # the posterior's unit noise, so the generator first sees noise in every code. A larger gain is a named
    # deviation that starts the means at the prior's scale (docs/smis_scenes.md).
    mu_init_gain: float = 0.02

    @nn.compact
    def __call__(self, crops: jnp.ndarray, *, train: bool):
        if self.norm not in ENCODER_NORMS:  # else a typo would silently drop the official norms
            raise ValueError(f"ClassEncoder norm {self.norm!r}: must be one of {ENCODER_NORMS}")
        c = self.classes
        widths = [self.nef * m for m in (1, 2, 4, 8)] + [self.nef * 8] * max(0, self.n_layers - 4)
        x = crops
        for i, width in enumerate(widths[:self.n_layers]):
            if i:
                x = lrelu(x)
            x = Conv(width, 3, strides=2, padding=1, use_bias=False, spectral=self.spectral, groups=c,
                     name=f"layer{i + 1}")(x, update_stats=train)
            if self.norm == "instance":
                x = instance_norm(x)
        x = lrelu(x)
        mu = Conv(CODE_CHANNELS * c, 3, groups=c, kernel_init=spade_init(self.mu_init_gain), name="fc_mu")(x)
        logvar = Conv(CODE_CHANNELS * c, 3, groups=c, name="fc_var")(x)
        return mu, logvar


def encoder_layers(height: int, latent_h: int) -> int:
    n = int(round(math.log2(height / latent_h)))
    if latent_h * 2 ** n != height or n < 1:
        raise ValueError(f"The encoder halves {height} to the latent height {latent_h}: not a power of two.")
    return n


def codes_from_map(z: jnp.ndarray, classes: int) -> jnp.ndarray:
    """[B, sh, sw, 8C] -> per-class codes [B, C, sh, sw, 8]."""
    b, sh, sw, _ = z.shape
    return z.reshape(b, sh, sw, classes, CODE_CHANNELS).transpose(0, 3, 1, 2, 4)


def map_from_codes(codes: jnp.ndarray) -> jnp.ndarray:
    """Per-class codes [B, C, sh, sw, 8] -> the generator's z [B, sh, sw, 8C]."""
    b, c, sh, sw, k = codes.shape
    return codes.transpose(0, 2, 3, 1, 4).reshape(b, sh, sw, c * k)


def _divides(g: int, n: int) -> bool:
    return g >= 1 and n % g == 0


class SMISSystem(GANSystem):
    """SMIS: the group-decreasing generator, the class-wise encoder trained with it, SPADE's multiscale D."""

    stochastic = True
    controls = ("z",)
    code_control = "z"
    config_rules = {
        **{f"model.{f}": cc.COUNT for f in ("ngf", "ndf", "nef", "num_D", "n_layers_D")},
        **{f"model.{f}": cc.BOOLEAN for f in ("spectral_g", "spectral_e", "spectral_d", "legacy_d_strides",
                                             "ade20k_up_4")},
        "model.netG": cc.one_of(*MODES),
        "model.num_upsampling_layers": cc.one_of(*NUM_UPSAMPLING),
        "model.spade_norm": cc.one_of("batch", "instance"),
        "model.norm_d": cc.one_of("instance", "none"),
        "model.encoder_norm": cc.one_of(*ENCODER_NORMS),
        "model.mu_init_gain": cc.number(above=0.0),
        "loss.kl_free_bits": cc.NON_NEGATIVE,
        "model.block_groups": cc.Rule(
            lambda v: isinstance(v, (tuple, list)) and (len(v) == 0 or (
                len(v) == len(BLOCKS) and all(isinstance(g, int) and g >= 1 for g in v))),
            f"() or {len(BLOCKS)} positive integers (groups of {', '.join(BLOCKS)})"),
    }

    @classmethod
    def config_problems(cls, config, height: int, width: int, devices) -> list[str]:
        from data_pipelines import sources

        m = config.model
        try:
            sh, _ = latent_size(height, width, m.num_upsampling_layers)
        except ValueError as e:
            return [f"config.model.num_upsampling_layers = {m.num_upsampling_layers!r} at the data's "
                    f"{height}x{width}: {e}"]
        if sh * (width // (height // sh)) < 2 and m.get("encoder_norm", "instance") == "instance":
            return [f"config.model.num_upsampling_layers = {m.num_upsampling_layers!r} at the data's {height}x{width}: "
                    f"a 1x1 latent grid, where the encoder's last InstanceNorm leaves only zeros (no code, no "
                    f"gradient); take fewer upsampling layers or larger images"]
        try:
            spec = sources.dataset_spec(config.data)
        except (ValueError, KeyError):
            return []  # the data section's own problem, reported by its rules
        return cls.shape_problems(m, spec.semantic_nc, spec.use_instance)

    @staticmethod
    def shape_problems(m, semantic_nc: int, use_instance: bool) -> list[str]:
        """Group counts that do not divide their widths (torch: 'in_channels must be divisible by groups'), and
        instance edges a netG cannot take, as `config.model.<field> = <value>: ...` lines."""
        problems = []
        if m.netG == "cityscapes" and not use_instance:
            return [f"config.model.netG = 'cityscapes': the Cityscapes generator interleaves the instance edges "
                    f"with every class; set config.data.use_instance = True (or take netG 'deepfashion' / 'ade20k')"]
        if m.netG != "cityscapes" and use_instance:
            return [f"config.model.netG = {m.netG!r}: this generator takes no instance edges (the official code "
                    f"interleaves them only in 'cityscapes'); set config.data.use_instance = False"]
        c = semantic_nc - int(use_instance)
        shape = layout(m.netG, m.ngf, c, tuple(m.block_groups))
        field = "block_groups" if m.block_groups else "netG"
        value = tuple(m.block_groups) if m.block_groups else m.netG
        fc_width, fc_groups = shape["fc"]
        if not (_divides(fc_groups, CODE_CHANNELS * c) and _divides(fc_groups, fc_width)):
            problems.append(f"config.model.ngf = {m.ngf}: fc's {fc_groups} groups do not divide its "
                            f"{CODE_CHANNELS * c} -> {fc_width} channels ({c} classes)")
        fin = fc_width
        seg_channels = 2 * c if shape["edges"] else c
        for name, fout, g in zip(BLOCKS, shape["widths"], shape["groups"]):
            fmiddle = min(fin, fout)
            for what, n in (("input", fin), ("middle", fmiddle), ("output", fout)):
                if not _divides(g, n):
                    problems.append(f"config.model.{field} = {value}: {name}'s {g} groups do not divide its {n} "
                                    f"{what} channels (ngf {m.ngf}, {c} classes)")
                    break
            else:
                hidden, shared, out = hidden_and_groups(m.netG, c, g)
                if not (_divides(shared, seg_channels) and _divides(shared, hidden)
                        and _divides(out, hidden) and _divides(out, fin) and _divides(out, fmiddle)):
                    problems.append(f"config.model.{field} = {value}: {name}'s SPADE MLP ({m.netG} mode: hidden "
                                    f"{hidden}, groups {shared} / {out}) does not divide its {seg_channels} layout, "
                                    f"{fin} and {fmiddle} channels ({c} classes)")
            fin = fout
        if not _divides(c, m.nef):
            problems.append(f"config.model.nef = {m.nef}: the encoder's convs are grouped by the {c} classes, "
                            f"which must divide its width")
        return problems

    def __init__(self, config, spec, height: int, width: int):
        super().__init__(config, spec, height, width)
        self.generator_side = ("g", "e")
        self.classes = spec.semantic_nc - int(spec.use_instance)
        self.latent = latent_size(self.height, self.width, config.model.num_upsampling_layers)
        self.networks = self.build_networks(self._model_config(), self.height, self.width)  # with the classes

    @classmethod
    def build_networks(cls, m, height: int, width: int) -> dict:
        # The class count is the dataset's; networks without a dataset (converters, counts) read it from
        # model.classes, which SMISSystem sets from the spec.
        classes = int(m.get("classes", 0))
        sh, _ = latent_size(height, width, m.num_upsampling_layers)
        g = GroupDecreasingGenerator(height, width, classes, m.netG, m.ngf, m.num_upsampling_layers,
                                     tuple(m.block_groups), bool(m.ade20k_up_4), m.spectral_g, m.spade_norm)
        d = MultiscaleDiscriminator(num_D=m.num_D, ndf=m.ndf, n_layers=m.n_layers_D, spectral=m.spectral_d,
                                    norm=m.norm_d, legacy_strides=m.legacy_d_strides)
        e = ClassEncoder(classes, m.nef, encoder_layers(height, sh), m.spectral_e,
                         m.get("encoder_norm", "instance"),  # runs saved before these options: the official
                         float(m.get("mu_init_gain", 0.02)))
        return {"g": g, "d": d, "e": e}

    def _model_config(self):
        m = self.config.model.copy_and_resolve_references()
        with m.unlocked():
            m.classes = self.classes
        return m

    def code_shape(self, batch_size: int) -> tuple[int, ...]:
        sh, sw = self.latent
        return (batch_size, self.classes, sh, sw, CODE_CHANNELS)

    def init_generator(self, key: jax.Array) -> dict:
        sh, sw = self.latent
        seg = jnp.zeros((1, self.height, self.width, self.semantic_nc), jnp.float32)
        z = jnp.zeros((1, sh, sw, CODE_CHANNELS * self.classes), jnp.float32)
        return self.generator.init({"params": key}, seg, z, train=False)

    def init_encoder(self, role: str, key: jax.Array) -> dict:
        crops = jnp.zeros((1, self.height, self.width, 3 * self.classes), jnp.float32)
        return self.networks["e"].init({"params": key}, crops, train=False)

    def crops(self, image: jnp.ndarray, cond: jnp.ndarray) -> jnp.ndarray:
        return class_crops(image, cond[..., :self.classes], (self.height, self.width))

    def generate(self, variables: dict, cond, batch: dict, key, *, train: bool) -> GeneratorOutput:
        out = dict(variables)
        (mu, logvar), out["e"] = apply(self.networks["e"], variables["e"], self.crops(batch["image"], cond),
                                       train=train)
        z = mu + jax.random.normal(key, mu.shape, mu.dtype) * jnp.exp(0.5 * logvar)
        image, out["g"] = apply(self.generator, variables["g"], cond, z, train=train)
        return GeneratorOutput(image, {"mu": mu, "logvar": logvar}, out)

    def generator_losses(self, aux: dict, batch: dict, features) -> dict:
        free_bits = float(self.config.loss.get("kl_free_bits", 0.0))  # runs saved before the option: official
        if free_bits == 0.0:
            kld = losses.kl_divergence(aux["mu"], aux["logvar"])
        else:  # a named deviation: free bits per class code (docs/smis_scenes.md)
            per_class = codes_from_map(losses.kl_terms(aux["mu"], aux["logvar"]), self.classes).sum(axis=(2, 3, 4))
            kld = losses.kl_free_bits(per_class, free_bits)
        return {"g_kld": self.config.loss.lambda_kld * kld}

    # -- per-class codes

    def draw_codes(self, key: jax.Array, batch_size: int) -> jnp.ndarray:
        """[batch_size, C, sh, sw, 8] from N(0, I), the official `vis_test`'s prior."""
        return jax.random.normal(key, self.code_shape(int(batch_size)))

    def encode_codes(self, variables: dict, image: jnp.ndarray, batch: dict) -> jnp.ndarray:
        """The encoder's mean per class, [B, C, sh, sw, 8] (a class absent from a layout gets the code of its
        all-zero crop)."""
        return self.encode_posterior(variables, image, batch)[0]

    def encode_posterior(self, variables: dict, image: jnp.ndarray, batch: dict):
        """The encoder's posterior per class: (mu, logvar), each [B, C, sh, sw, 8]."""
        cond = self.conditioning(batch)
        mu, logvar = self.networks["e"].apply(variables["e"], self.crops(image, cond), train=False)
        return codes_from_map(mu, self.classes), codes_from_map(logvar, self.classes)

    def sample(self, variables: dict, batch: dict, key=None, *, z=None):
        """Without z, per-class codes are drawn from N(0, I) with `key`; z: codes [B, C, sh, sw, 8]."""
        cond = self.conditioning(batch)
        shape = self.code_shape(cond.shape[0])
        if z is None:
            if key is None:
                raise ValueError("This model samples per-class codes: pass rng (or z).")
            z = self.draw_codes(key, cond.shape[0])
        elif tuple(z.shape) != shape:
            raise ValueError(f"z must be per-class codes {list(shape)} (layouts, classes, latent height, width, "
                             f"{CODE_CHANNELS}) for {shape[0]} layout(s), got {list(z.shape)}.")
        return self.generator.apply(variables["g"], cond, map_from_codes(jnp.asarray(z, jnp.float32)), train=False)


__all__ = ["ClassEncoder", "GroupDecreasingGenerator", "SMISSystem", "SPADEV2ResnetBlock", "class_crops",
           "codes_from_map", "interleave_edges", "latent_size", "layout", "map_from_codes"]
