"""Training recipes: a loss (a :class:`~model.losses.weighted_loss_sum.WeightedLossSum`) per
paper, named in the config's ``loss.recipe``."""

from model.losses.recipes.ctl_recipe import ctl_recipe
from model.losses.recipes.hpl_recipe import hpl_recipe
from model.losses.recipes.ranking_regularizer_recipe import ranking_regularizer_recipe

__all__ = ["ctl_recipe", "hpl_recipe", "ranking_regularizer_recipe"]
