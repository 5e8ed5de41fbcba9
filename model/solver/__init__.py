from model.solver.optimizer import make_optimizer
from model.solver.warmup_multistep_lr import WarmupMultiStepLR

__all__ = ["WarmupMultiStepLR", "make_optimizer"]
