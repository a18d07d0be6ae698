"""Face data: sources -> prepared Arrow shards -> tensors.

numpy, pyarrow and PIL only; torch is imported by ``data.loader`` alone, so importing this
package never pulls torch in.
"""

from data.errors import DatasetError, ShardError
from data.labels import DEFAULT_FACE_CLASSES, FACE_PARSING_CLASSES, PAPER_EXCLUDED, face_mask
from data.prepare import prepare, synthesize
from data.shards import (
    SPLITS,
    DatasetWriter,
    Manifest,
    SplitArrays,
    load_manifest,
    read_split,
    verify,
    write_dataset,
)
from data.sources import SOURCES
from data.synthetic import render_faces, save_sample_grid, write_celeba_layout, write_celebamask_hq_layout

__all__ = [
    "DEFAULT_FACE_CLASSES",
    "FACE_PARSING_CLASSES",
    "PAPER_EXCLUDED",
    "SOURCES",
    "SPLITS",
    "DatasetError",
    "DatasetWriter",
    "Manifest",
    "ShardError",
    "SplitArrays",
    "face_mask",
    "load_manifest",
    "prepare",
    "read_split",
    "render_faces",
    "save_sample_grid",
    "synthesize",
    "verify",
    "write_celeba_layout",
    "write_celebamask_hq_layout",
    "write_dataset",
]
