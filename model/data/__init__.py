"""Dataset records and readers (torch-free: importing this package does not import torch)."""

from model.data.blob_image import BlobImage
from model.data.coco_pairs import read_coco_pairs
from model.data.dataset_split import DatasetError, DatasetSplit
from model.data.folder_items import read_folder_items
from model.data.market1501 import read_dukemtmc, read_market1501
from model.data.sample import Sample
from model.data.service_store import read_service_store

__all__ = [
    "BlobImage",
    "DatasetError",
    "DatasetSplit",
    "Sample",
    "read_coco_pairs",
    "read_dukemtmc",
    "read_folder_items",
    "read_market1501",
    "read_service_store",
]
