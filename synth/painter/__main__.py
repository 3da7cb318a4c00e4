"""`python -m synth.painter`: paint layouts in a browser and watch the model render them.

    python -m synth.painter --checkpoint demo_out/spade                 # a run's workdir or its checkpoints/
    python -m synth.painter --config configs/spade_cityscapes.py --params latest_net_G.pth   # an official file

Loads the model, compiles everything the page can ask for, then prints the page's address (127.0.0.1 and port
8765 unless told otherwise; --port 0 takes a free one) and serves until interrupted.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

flags.DEFINE_string("checkpoint", None, "A training run's workdir or its checkpoints/ directory.")
flags.DEFINE_integer("step", None, "With --checkpoint: this step instead of the newest intact one.")
config_flags.DEFINE_config_file("config", None, "With --params: the config of an official release file.",
                                lock_config=False)
flags.DEFINE_string("params", None, "An official release file (latest_net_G.pth, or a conditional-IMLE TF "
                    "checkpoint), converted on the fly; needs --config.")
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (the default serves this machine only).")
flags.DEFINE_integer("port", 8765, "Port to listen on; 0 picks a free one.", lower_bound=0, upper_bound=65535)
flags.DEFINE_integer("samples", 4, "Samples in the page's grid for models whose samples vary (a noise code).",
                     lower_bound=1, upper_bound=16)
flags.DEFINE_integer("max_upload_mb", 32, "Largest request body (a label PNG or a style image) in MiB.",
                     lower_bound=1)

log = logging.getLogger("synth.painter")


def main(argv):
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import jax

    from synth import generate, logs
    from synth.errors import USER_ERRORS
    from synth.painter import server

    logs.configure()
    f = flags.FLAGS
    if bool(f.checkpoint) == bool(f.params):
        raise app.UsageError("pass either --checkpoint (a training run) or --config with --params (an official file)")
    if f.params and f.config is None:
        raise app.UsageError("--params needs --config (the model's config)")
    jax.config.update("jax_compilation_cache_dir",
                      os.environ.get("SYNTH_JAX_CACHE", os.path.expanduser("~/.cache/synth-jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    try:
        model = (generate.from_official(f.config, f.params) if f.params
                 else generate.load(f.checkpoint, step=f.step))
    except USER_ERRORS + (FileNotFoundError,) as e:  # a named problem with the inputs: no traceback
        sys.exit(f"synth.painter: {type(e).__name__}: {e}")
    painter = server.Painter(model, grid=f.samples, limits=server.Limits(max_body_bytes=f.max_upload_mb << 20))
    try:
        httpd = server.make_server(painter, f.host, f.port)  # bound before the warm-up: a busy port fails at once
    except OSError as e:
        sys.exit(f"synth.painter: cannot listen on {f.host}:{f.port} ({e.strerror or e}); try another --port "
                 "(0 picks a free one).")
    log.info("painter: %s; compiling ...", painter.describe())
    seconds = painter.warm_up()
    log.info("painter: compiled in %.1f s", seconds)
    print(f"synth painter: {painter.describe()}\nOpen {httpd.url} (Ctrl+C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    app.run(main)
