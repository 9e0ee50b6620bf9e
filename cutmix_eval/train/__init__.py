"""Training: mixing methods, named recipes and the loop."""

from cutmix_eval.train.loop import TrainOutcome, train
from cutmix_eval.train.mixing import METHODS, create_mixer
from cutmix_eval.train.recipes import RECIPES, Recipe, get_recipe

__all__ = ["METHODS", "RECIPES", "Recipe", "TrainOutcome", "create_mixer", "get_recipe", "train"]
