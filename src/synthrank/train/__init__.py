"""``synthrank train``: list-wise training of a bi-encoder on graded relevance.

Submodules (imported on use, so that importing this package stays cheap):

* :mod:`synthrank.train.config` -- :class:`TrainConfig` and ``--config`` files
* :mod:`synthrank.train.dataset` -- per-query groups re-drawn each epoch, the collator
* :mod:`synthrank.train.trainer` -- ``RankingTrainer`` (HF ``Trainer``), :func:`train`
* :mod:`synthrank.train.cli` -- ``train_command`` and ``mine_command``
"""

__all__ = ["train", "TrainConfig", "load_train_config"]


def __getattr__(name):
    if name == "train":
        from synthrank.train.trainer import train

        return train
    if name in ("TrainConfig", "load_train_config"):
        from synthrank.train import config

        return getattr(config, name)
    raise AttributeError(name)
