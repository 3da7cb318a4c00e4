"""Bad options to the evaluation protocols and to `evaluate.py`: each is refused before any model is loaded, with
a message that names the option and the value (the command line: one line, no traceback). Generated over every
protocol x the options it takes x bad values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synth import evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "checkpoints", "ccfpse")
BAD_COUNTS = [0, -1, 2.5, True, "10"]

COUNT_CASES = [pytest.param(name, option, value, id=f"{name}-{option}={value!r}")
               for name, protocol in evaluation.PROTOCOLS.items()
               for option in evaluation.OPTIONS[protocol.runner] if option in evaluation.COUNTS
               for value in BAD_COUNTS]


def test_the_suite_is_large_enough():
    assert len(COUNT_CASES) >= 50


@pytest.mark.parametrize("name,option,value", COUNT_CASES)
def test_a_count_out_of_range_is_named(name, option, value):
    with pytest.raises(evaluation.OptionError, match=f"option {option} = {value!r}"):
        evaluation.check_options(name, {option: value})


@pytest.mark.parametrize("name", list(evaluation.PROTOCOLS))
def test_an_option_the_protocol_does_not_take_is_named_with_what_it_takes(name):
    takes = evaluation.OPTIONS[evaluation.PROTOCOLS[name].runner]
    with pytest.raises(evaluation.OptionError) as e:
        evaluation.check_options(name, {"colour": 3})
    message = str(e.value)
    assert "takes no option colour" in message
    for option in takes:  # flags as flags; Python-only options said to be so
        assert (f"--{option}" in message) if option not in evaluation.PYTHON_ONLY else (option in message.split(
            "from Python:")[-1])


@pytest.mark.parametrize("name", [n for n, p in evaluation.PROTOCOLS.items()
                                  if "resize" in evaluation.OPTIONS[p.runner]])
def test_an_unknown_resize_is_named(name):
    with pytest.raises(evaluation.OptionError, match="option resize = 'bilinear'"):
        evaluation.check_options(name, {"resize": "bilinear"})


def test_an_unknown_protocol_is_named():
    with pytest.raises(evaluation.OptionError, match="unknown protocol 'scenes-v2'"):
        evaluation.check_options("scenes-v2", {})


def test_none_means_not_given():
    assert evaluation.check_options("scenes-v1", {"real_images": None, "samples_per_layout": 3}) == {
        "samples_per_layout": 3}


def _evaluate(*args, timeout=240):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("args,words", [
    (["--workdir", FIXTURE, "--real_images=0"], "--real_images"),
    (["--workdir", FIXTURE, "--samples_per_layout=-2"], "--samples_per_layout"),
    (["--workdir", FIXTURE, "--checkpoint=-1"], "--checkpoint"),
    (["--workdir", FIXTURE, "--resize=bicubic"], "--resize"),
    (["--workdir", FIXTURE, "--protocol", "fid-v9"], "unknown protocol 'fid-v9'"),
    (["--workdir", FIXTURE, "--protocol", "cimle-diversity-v1", "--real_images=5"], "takes no option real_images"),
    (["--workdir", FIXTURE, "--protocol", "spade-cityscapes-v1", "--data_root", FIXTURE],
     "evaluates cityscapes models; this model was trained on 'scenes'"),
    (["--workdir", os.path.join(ROOT, "tests", "fixtures")], "No checkpoint in"),
], ids=["real_images", "samples", "checkpoint", "resize", "protocol", "option", "dataset", "no-checkpoint"])
def test_evaluate_py_refuses_in_one_line(args, words):
    run = _evaluate(*args)
    assert run.returncode != 0
    assert words in run.stderr and "Traceback" not in run.stderr, run.stderr[-3000:]


def test_every_option_but_the_python_only_ones_is_a_flag_of_evaluate_py():
    import evaluate as evaluate_main  # noqa: F401  (defines the flags)
    from absl import flags

    options = {o for takes in evaluation.OPTIONS.values() for o in takes} - set(evaluation.PYTHON_ONLY)
    assert "exemplar_list" in options
    assert options <= set(flags.FLAGS), sorted(options - set(flags.FLAGS))
