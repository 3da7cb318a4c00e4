"""bench/scenes_diversity.py's schedule stretching: a config whose schedule ends before the budget is scaled to
fill it, with the points inside the schedule (the decay start, IMLE's re-initialisation epoch) scaled along."""

import pytest


@pytest.fixture(scope="module")
def bench():
    from tests.helpers import import_bench

    return import_bench("scenes_diversity")


def test_a_gan_schedule_is_scaled_with_its_decay_start(bench):
    from configs import scenes_pix2pix

    config = scenes_pix2pix.get_config()
    assert (config.train.num_steps, config.train.decay_start_step) == (2000, 1000)
    factor = bench.stretch_schedule(config, 5400)
    assert factor == pytest.approx(2.7)
    assert (config.train.num_steps, config.train.decay_start_step) == (5400, 2700)


def test_an_imle_schedule_keeps_its_epoch_length_and_moves_its_reinit(bench):
    from configs import scenes_cimle

    config = scenes_cimle.get_config()
    inner, reinit = config.imle.inner_steps, config.imle.reinit_epoch
    bench.stretch_schedule(config, 2 * config.train.num_steps)
    assert config.train.num_steps == 2400 and config.imle.inner_steps == inner
    assert config.imle.reinit_epoch == 2 * reinit


def test_a_schedule_is_never_shortened(bench):
    from configs import scenes_spade

    config = scenes_spade.get_config()
    assert bench.stretch_schedule(config, 500) == 1.0
    assert (config.train.num_steps, config.train.decay_start_step) == (2000, 1000)


def test_budget_steps_come_from_the_earlier_rate(bench):
    previous = {"runs": {"scenes_pix2pix": {"steps": 2000, "train_seconds": 400.0}}}
    assert bench.budget_steps(previous, "scenes_pix2pix", 1800) == 9000
    assert bench.budget_steps(previous, "scenes_crn", 1800) is None
