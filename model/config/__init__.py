from model.config.train_config import (
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    SolverConfig,
    TrainConfig,
    from_dict,
    load_config,
    to_dict,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "SolverConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "to_dict",
]
