"""Centroid indexes: one L2-normalised centroid per item, exact (flat) and approximate (IVF)
top-k, the GPU search mirror."""

from index.centroid_index import CentroidIndex
from index.centroid_math import centroid_from_sum, centroids_by_label, l2_normalize
from index.flat_centroid_index import FlatCentroidIndex
from index.gpu_search_mirror import GpuSearchMirror, gpu_available
from index.index_errors import IndexUnavailableError
from index.ivf_centroid_index import IvfCentroidIndex
from index.milvus_centroid_index import MilvusCentroidIndex
from index.rw_lock import ReadWriteLock

__all__ = [
    "CentroidIndex",
    "FlatCentroidIndex",
    "GpuSearchMirror",
    "IndexUnavailableError",
    "IvfCentroidIndex",
    "MilvusCentroidIndex",
    "ReadWriteLock",
    "centroid_from_sum",
    "centroids_by_label",
    "gpu_available",
    "l2_normalize",
]
