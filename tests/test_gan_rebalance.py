"""Rarity rebalancing in the GAN trainer (`config.rebalance`): the data stream follows the rarity sampler's epochs
(the same examples after a resume), batches carry each example's rarity weights for a system that reads them, and
a system that reads none refuses loss rebalancing by name."""

import numpy as np
import pytest

from configs import scenes_crn, scenes_pix2pixhd
from data_pipelines import pipeline
from synth import config_check
from synth.training import loop


def test_epoch_order_reads_each_epochs_draw_in_turn():
    draws = {}

    def sample(n, epoch):
        draws[epoch] = draws.get(epoch, 0) + 1
        return (np.arange(n) * (epoch + 3)) % 7

    order = pipeline.epoch_order(sample, 5)
    assert [order(p) for p in range(12)] == [0, 3, 6, 2, 5, 0, 4, 1, 5, 2, 0, 5]
    assert draws == {0: 1, 1: 1, 2: 1}  # each epoch drawn once


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    return loop.make_trainer(scenes_crn.get_config("tiny,rebalance"), str(tmp_path_factory.mktemp("crn")))


def first_batch(trainer, start):
    trainer.begin(None, start)
    return next(trainer._train_iter)


def test_the_stream_follows_the_rarity_sampler_and_resumes_on_it(trainer):
    n, b = trainer.train_source.num_examples, trainer.config.train.batch_size
    epoch0 = trainer.sampler.sample(n, 0)
    np.testing.assert_array_equal(first_batch(trainer, 0)["index"], epoch0[:b])
    # Resumed at step 3: the positions 3b.., still the sampler's epoch-0 draw (and the next epoch past its end).
    expected = np.concatenate([epoch0, trainer.sampler.sample(n, 1)])[3 * b:4 * b]
    np.testing.assert_array_equal(first_batch(trainer, 3)["index"], expected)


def test_batches_carry_the_rarity_weights_the_loss_reads(trainer):
    trainer.begin(None, 0)
    host = trainer.next_host_batch()
    _, batch_arg, _ = trainer.step_arguments()
    assert batch_arg["weights"].shape == batch_arg["label"].shape == host["weights"].shape
    assert host["weights"].dtype == np.float32 and "weights" in trainer.system.batch_keys
    ignore = trainer.spec.table.ignore_id
    for i, label, weights in zip(host["index"], host["label"], host["weights"]):
        np.testing.assert_array_equal(weights, trainer.rarity.pixel_weights(int(i), label, ignore))
    assert np.ptp(host["weights"]) > 0  # rarer pixels weigh more


def test_a_system_that_reads_no_weights_refuses_loss_rebalancing(tmp_path):
    config = scenes_pix2pixhd.get_config("tiny,noise=2")
    config.rebalance = dict(data=False, loss=True)
    config_check.validate(config)
    with pytest.raises(config_check.ConfigError, match=r"config.rebalance.loss = True: a pix2pixhd model"):
        loop.make_trainer(config, str(tmp_path))
