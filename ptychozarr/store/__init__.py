"""The dataset store: schema, creation, opening and verification."""

from ptychozarr.store.create import StoreWriter, consolidate, create_array, stage_subgroup
from ptychozarr.store.open import (
    open_dataset,
    open_datatree,
    open_store,
    read_probe,
    required_array,
)
from ptychozarr.store.schema import (
    FORMAT_VERSION,
    GROUP_ARRAYS,
    PREDICTION_ARRAYS,
    RAW_ARRAYS,
    ArraySpec,
)

__all__ = [
    "FORMAT_VERSION",
    "GROUP_ARRAYS",
    "PREDICTION_ARRAYS",
    "RAW_ARRAYS",
    "ArraySpec",
    "StoreWriter",
    "consolidate",
    "create_array",
    "open_dataset",
    "open_datatree",
    "open_store",
    "read_probe",
    "required_array",
    "stage_subgroup",
]
