"""Constants and helpers shared by the test modules (fixtures live in conftest.py)."""
from cxr_d2.engine import Trainer, check_config

__all__ = ["TINY", "TINY_SIZE", "TWO_FILMS", "train"]

# The tiny phantom set registered by the `tiny_phantom` fixture: cxr_phantom_tiny_{split}.
TINY = "cxr_phantom_tiny"
TINY_SIZE = {"num_images": 40, "size": 128}
# The two films of the overfit tests, registered by the `two_films` fixture.
TWO_FILMS = "cxr_phantom_tiny_two"


def train(cfg):
    """
    Checks and freezes `cfg`, trains it from scratch with cxr-d2's Trainer and returns the
    trainer and the last value of each loss.
    """
    check_config(cfg)
    cfg.freeze()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    histories = trainer.storage.histories()
    return trainer, {k: v.latest() for k, v in histories.items() if k.startswith("loss")}
