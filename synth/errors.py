"""The errors that say what to fix in the user's own inputs (config, data, checkpoints, weight files, command-line
options). `train.py` and `evaluate.py` print their message without a traceback; any other exception is a bug and
keeps its traceback."""

from __future__ import annotations

from data_pipelines.labels import LabelError
from data_pipelines.sources.base import DatasetError
from synth.checkpoint import CheckpointDamagedError, CheckpointMismatchError, CheckpointNotFoundError
from synth.config_check import ConfigError
from synth.distributed import DistributedError
from synth.pretrained.files import MissingWeightsError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetError, LabelError, CheckpointDamagedError,
                                            CheckpointMismatchError, CheckpointNotFoundError, MissingWeightsError,
                                            DistributedError)
