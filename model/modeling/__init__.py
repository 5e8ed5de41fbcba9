"""Networks of the training kit."""

from model.modeling.bn_neck import BNNeck
from model.modeling.embedding_net import EmbeddingNet
from model.modeling.input_normalization import InputNormalization
from model.modeling.net_output import NetOutput
from model.modeling.two_head_net import TwoHeadNet

__all__ = ["BNNeck", "EmbeddingNet", "InputNormalization", "NetOutput", "TwoHeadNet"]
