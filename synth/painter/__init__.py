"""The painter: paint a layout with the model's classes in a browser and watch the model render it (GauGAN's demo,
for any model synth can train or convert), served offline from this package.

    python -m synth.painter --checkpoint demo_out/spade          # a training run (or its checkpoints/)
    python -m synth.painter --config configs/spade_cityscapes.py --params latest_net_G.pth

`server.py` holds the model and answers the page (`static/`: index.html, app.mjs, painter.mjs, style.css; no
build step, nothing fetched from elsewhere); `__main__.py` is the command.
"""

from synth.painter.server import Painter, RequestError, make_server

__all__ = ["Painter", "RequestError", "make_server"]
