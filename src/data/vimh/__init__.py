"""The VIMH dataset format: specification helpers, reader and atomic writer."""

from src.data.vimh.format import (
    INFO_FILENAME,
    SPLITS,
    ParamSpec,
    VIMHFormatError,
    audio_filename,
    dataset_folder_name,
    parse_folder_name,
    record_dtype,
)
from src.data.vimh.reader import VIMHDataset, VIMHInfo, VIMHSplit, read_info
from src.data.vimh.writer import VIMHWriter, build_info, dataset_lock, encode_records

__all__ = [
    "INFO_FILENAME",
    "SPLITS",
    "ParamSpec",
    "VIMHDataset",
    "VIMHFormatError",
    "VIMHInfo",
    "VIMHSplit",
    "VIMHWriter",
    "audio_filename",
    "build_info",
    "dataset_folder_name",
    "dataset_lock",
    "encode_records",
    "parse_folder_name",
    "read_info",
    "record_dtype",
]
