"""Training: the loop (and, as they land, mixing methods and named recipes)."""

from cutmix_eval.train.loop import TrainConfig, channel_stats, train_classifier

__all__ = ["TrainConfig", "channel_stats", "train_classifier"]
