"""What every benchmark script shares: the repository on the path, JAX's compile cache, the JSON header (machine,
devices, versions, commit, load), timing by median, like-with-like FLOP counting, and printing the result.

A bench script starts with `import harness` (bench/ is on the path when it runs as `python bench/x.py`), which
puts the repository root on sys.path; `harness.use_compile_cache()` honours $SYNTH_JAX_CACHE like train.py.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import synth  # noqa: E402,F401  (sets XLA:CPU's convolution library before any JAX backend starts)


def use_compile_cache() -> str:
    """JAX's persistent compilation cache at $SYNTH_JAX_CACHE (default ~/.cache/synth-jax), as train.py."""
    import jax

    path = os.environ.get("SYNTH_JAX_CACHE", os.path.expanduser("~/.cache/synth-jax"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_busy_fraction(seconds: float = 0.5) -> float:
    """Share of the machine's CPU time used (by anything) over `seconds`, from /proc/stat: noise in a timing."""
    def read():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait
    try:
        t0, i0 = read()
        time.sleep(seconds)
        t1, i1 = read()
    except OSError:
        return float("nan")
    return round(1 - (i1 - i0) / max(t1 - t0, 1), 3)


def header(**extra) -> dict:
    """The machine and software a result came from."""
    import jax

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": _commit(), "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "devices": [str(d) for d in jax.devices()], "jax": jax.__version__,
            "cpu_busy_before": cpu_busy_fraction(), **extra}


def median_seconds(fn, repeats: int, warmup: int = 1) -> dict:
    """Median, min and max wall seconds of `fn()` (its result blocked on) after `warmup` untimed calls."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4), "repeats": repeats}


def conv_matmul_flops(closed_jaxpr) -> float:
    """FLOPs of the convolutions and matrix products in a jaxpr (`synth.precision.jaxpr_matmul_flops`, all dtypes):
    what torch's FlopCounterMode counts, for a like-with-like comparison with an official step. XLA's
    `cost_analysis` also counts elementwise work."""
    from synth import precision

    return float(sum(precision.jaxpr_matmul_flops(closed_jaxpr.jaxpr).values()))


def max_abs(a, b) -> float:
    """Largest absolute difference of two arrays of one shape, in float64 (parity benches)."""
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def tree_max_abs(a, b) -> float:
    """`max_abs` over two pytrees of the same structure."""
    import jax

    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError("variable trees differ")
    return max((max_abs(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), default=0.0)


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(result: dict) -> None:
    """Prints the result as JSON (the one thing a bench writes to stdout)."""
    print(json.dumps(result, indent=1, default=str))


# ------------------------------------------------------------------------------------------------ training steps

def time_training_step(config, *, size: int | tuple[int, int], classes: int, batch: int, steps: int,
                       forward: bool = False, feature_net=None) -> dict:
    """Our jitted, donated GAN step of the system `config.model` names (`synth.training.gan_step`), on random
    data (`classes` labels, no instance map) at size x size, with a random-weight VGG-19 to relu5_1 as the
    perceptual network unless `feature_net` = (module, variables) is given; with `forward`, also the system's
    eval-mode sample. `size`: an int (square) or (height, width). `config.train.precision` / `remat` apply.
    -> step time, images/s, XLA's and the conv/matmul FLOPs, compile time, temporaries."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from data_pipelines import labels
    from data_pipelines.sources import DatasetSpec
    from synth import models
    from synth.pretrained.vgg import VGG, random_vgg19_params
    from synth.training import gan_step, optimizers

    height, width = (size, size) if isinstance(size, int) else size
    spec = DatasetSpec("bench", labels.custom(classes), use_instance=False)
    system = models.system_class(config.model.name)(config, spec, height, width)
    tx_g, tx_d = optimizers.adam(config.optim, config.train, "g"), optimizers.adam(config.optim, config.train, "d")
    schedules = (optimizers.schedule(1e-4, 1000, 1000),) * 2
    state = jax.jit(lambda r: gan_step.init_state(system, tx_g, tx_d, r, ema=False))(jax.random.key(0))
    net, net_params = feature_net or (VGG(19, "relu5_1"), random_vgg19_params(jax.random.key(1)))
    step = jax.jit(gan_step.make_gan_step(system, config, tx_g, tx_d, schedules, net), donate_argnums=(0,))
    rng = np.random.default_rng(0)
    data = {"label": jnp.asarray(rng.integers(0, classes, (batch, height, width)), jnp.int32),
            "image": jnp.asarray(rng.uniform(-1, 1, (batch, height, width, 3)), jnp.float32)}
    if "ref_image" in system.batch_keys:  # an exemplar-based system: a random exemplar, every other one the image
        data.update(ref_label=jnp.asarray(rng.integers(0, classes, (batch, height, width)), jnp.int32),
                    ref_image=jnp.asarray(rng.uniform(-1, 1, (batch, height, width, 3)), jnp.float32),
                    self_ref=jnp.asarray(np.arange(batch) % 2 == 0, jnp.float32))
    t0 = time.perf_counter()
    compiled = step.lower(state, data, net_params).compile()
    compile_s = time.perf_counter() - t0
    flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
    conv_flops = conv_matmul_flops(step.trace(state, data, net_params).jaxpr)
    memory = compiled.memory_analysis()
    state, metrics = compiled(state, data, net_params)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, data, net_params)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    out = {"median_step_s": round(median, 3), "images_per_s": round(batch / median, 3),
           "gflop_per_step": round(flops / 1e9, 1), "achieved_gflop_per_s": round(flops / 1e9 / median, 1),
           "gflop_per_step_conv_matmul": round(conv_flops / 1e9, 1),
           "achieved_conv_matmul_gflop_per_s": round(conv_flops / 1e9 / median, 1),
           "compile_s": round(compile_s, 1),
           "xla_temp_mib": round(getattr(memory, "temp_size_in_bytes", 0) / 2 ** 20, 1) if memory else None,
           "loss_terms": sorted(k for k in metrics if k.startswith(("g_", "d_")) and "norm" not in k)}
    if forward:
        variables = system.inference_variables(state)
        sample = jax.jit(lambda v, b: system.sample(v, b, jax.random.key(0)))
        out["generator_forward_s"] = median_seconds(lambda: sample(variables, data), 3)["median_s"]
    return out


# The end of every official-trainer driver: given `one()` (one training iteration, as the official train.py),
# `infer()` (the generator's inference forward), `steps` and `batch`, it times both and counts one iteration's
# convolution and matrix-product FLOPs with torch's FlopCounterMode, then prints JSON.
OFFICIAL_TIMING = r'''
import json, resource, statistics, time
one()
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    one()
    times.append(time.perf_counter() - t0)
m = statistics.median(times)
fwd = []
with torch.no_grad():
    infer()
    for _ in range(3):
        t0 = time.perf_counter()
        infer()
        fwd.append(time.perf_counter() - t0)
from torch.utils.flop_counter import FlopCounterMode
with FlopCounterMode(display=False) as counter:
    one()
flops = counter.get_total_flops()
print(json.dumps({"median_step_s": round(m, 3), "images_per_s": round(batch / m, 3),
                  "generator_forward_s": round(statistics.median(fwd), 3),
                  "gflop_per_step_conv_matmul": round(flops / 1e9, 1),
                  "achieved_conv_matmul_gflop_per_s": round(flops / 1e9 / m, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
'''


def run_driver(source: str, args: list[str], torch_python: str, cwd: str | None = None) -> dict:
    """Runs a torch driver script (written to a temporary folder, the working directory unless `cwd`) and
    returns the JSON of its last stdout line, or {"error": its stderr's tail}."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        driver = os.path.join(tmp, "official_driver.py")
        with open(driver, "w") as f:
            f.write(source)
        # A relative interpreter path would be resolved against `cwd`, not where the user typed it.
        python = os.path.abspath(torch_python) if os.sep in torch_python else torch_python
        out = subprocess.run([python, driver] + args, capture_output=True, text=True, cwd=cwd or tmp,
                             timeout=3000)
    if out.returncode:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def speedups(entry: dict, official_key: str = "official_pytorch") -> None:
    """Adds each of our variants' images/s ratio to the official side's (and the forward's), in place."""
    official = entry.get(official_key) or {}
    if not official.get("images_per_s"):
        return
    for k in [k for k in entry if k.startswith("ours")]:
        entry[k]["speedup_vs_official"] = round(entry[k]["images_per_s"] / official["images_per_s"], 2)
        if "generator_forward_s" in entry[k] and official.get("generator_forward_s"):
            entry[k]["forward_speedup_vs_official"] = round(
                official["generator_forward_s"] / entry[k]["generator_forward_s"], 2)


# ------------------------------------------------------------------------------------------------ parity benches

def parity_main(doc: str, *, repo: str, env_var: str, default_root: str, settings: dict, default_setting: str,
                run_torch, compare, worst, info_key: str = "official") -> None:
    """The command line and loop every parity bench shares: for each setting, `run_torch(torch_python, root, tmp,
    setting, threads)` (the official code writes its outputs to tmp; returns what it reports, kept under
    `info_key`), `compare(tmp, setting)` (our outputs against them: a report), `worst(report)` (its largest
    difference); prints the JSON and exits 1 when a setting is not within --tolerance."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--root", default=os.environ.get(env_var, default_root),
                   help=f"a checkout of {repo} (default ${env_var} or {default_root})")
    p.add_argument("--torch-python", default=sys.executable, help="a Python with torch (default: this one)")
    p.add_argument("--settings", default=default_setting, help="comma-separated: " + ",".join(settings))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    results, ok = header(), True
    for name in args.settings.split(","):
        setting = settings[name]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            info = run_torch(args.torch_python, args.root, tmp, setting, args.threads)
            t1 = time.time()
            report = compare(tmp, setting)
            t2 = time.time()
        report["max_abs_diff"] = worst(report)
        report["pass"] = report["max_abs_diff"] < args.tolerance
        ok &= report["pass"]
        report.update({"setting": setting, info_key: info, "torch_s": round(t1 - t0, 1),
                       "jax_s": round(t2 - t1, 1)})
        results[name] = report
    results["tolerance"] = args.tolerance
    print(json.dumps(results, indent=2))
    sys.exit(0 if ok else 1)


# Torch-side helpers the parity drivers (scripts run by the official code's interpreter) share: dropout with
# masks drawn once per module and kept (so both sides apply the same masks), biases moved off zero (so a bias
# that one side drops shows), state dicts saved as .npz for the converters, NCHW -> NHWC. They read the driver's
# `a.out`.
TORCH_DRIVER_HELPERS = r'''
masks = {}


def fixed_mask(mod, name, p):
    def forward(x):
        if not mod.training:
            return x
        if name not in masks:
            masks[name] = (torch.rand_like(x) >= p).float()
        return x * masks[name] / (1 - p)
    return forward


def perturb(net):
    with torch.no_grad():
        for name, prm in net.named_parameters():
            if name.endswith("bias"):
                prm.add_(0.1 * torch.randn_like(prm))
    return net


def save_sd(name, net):
    np.savez(os.path.join(a.out, name + "_sd.npz"), **{k: v.detach().numpy() for k, v in net.state_dict().items()})


nhwc = lambda t: t.detach().numpy().transpose(0, 2, 3, 1)  # noqa: E731
'''
