"""Run synthrank.train.trainer.train from a JSON config (argv[1]); used by the torchrun tests.

Rank 0 writes ``{first_loss, global_step, train_loss}`` to argv[2].
"""

import json
import os
import sys

from synthrank.train.config import load_train_config
from synthrank.train.trainer import train

if __name__ == "__main__":
    config = load_train_config(None, json.loads(open(sys.argv[1]).read()))
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(sys.argv[2], "w") as handle:
            json.dump({"first_loss": result.first_loss, "global_step": result.global_step,
                       "train_loss": result.train_loss}, handle)
