"""A torch-free HTTP client of the retrieval service: limits, chunked enrollment, resume state."""

from client.enroll_folder import EmptyFolderError, FolderEnrollment, FolderSummary
from client.enroll_state import DEFAULT_STATE_NAME, EnrollState, EnrollStateError
from client.file_outcome import FileOutcome, Outcome
from client.image_folders import IMAGE_SUFFIXES, image_files, item_folders
from client.item_ids import ItemIdError, item_id_for, map_item_ids
from client.item_uploader import ItemUploader
from client.problem_detail import problem_detail
from client.service_error import ServiceError
from client.service_limits import ServiceLimits, read_limits
from client.upload_chunks import fits_alone, oversize_detail, part_bytes, plan_chunks

__all__ = [
    "DEFAULT_STATE_NAME",
    "IMAGE_SUFFIXES",
    "EmptyFolderError",
    "EnrollState",
    "EnrollStateError",
    "FileOutcome",
    "FolderEnrollment",
    "FolderSummary",
    "ItemIdError",
    "ItemUploader",
    "Outcome",
    "ServiceError",
    "ServiceLimits",
    "fits_alone",
    "image_files",
    "item_folders",
    "item_id_for",
    "map_item_ids",
    "oversize_detail",
    "part_bytes",
    "plan_chunks",
    "problem_detail",
    "read_limits",
]
