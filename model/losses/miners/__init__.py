"""Triplet miners: which (anchor, positive, negative) triplets of a batch a triplet loss uses."""

from model.losses.miners.batch_hard_miner import BatchHardMiner, HardestPairs
from model.losses.miners.miner import Miner, Triplets
from model.losses.miners.semi_hard_miner import SemiHardMiner

__all__ = ["BatchHardMiner", "HardestPairs", "Miner", "SemiHardMiner", "Triplets"]
