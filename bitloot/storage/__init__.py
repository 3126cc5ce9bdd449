"""Object storage for sealed keys: S3/R2, or the local disk with self-signed URLs."""

from bitloot.storage.base import (
    ObjectStorage,
    StorageError,
    object_key_for,
    validate_metadata,
    validate_object_key,
)
from bitloot.storage.factory import open_storage, storage_from_url
from bitloot.storage.local import LocalObjectStorage, local_objects_routes
from bitloot.storage.s3 import S3ObjectStorage

__all__ = [
    "LocalObjectStorage",
    "ObjectStorage",
    "S3ObjectStorage",
    "StorageError",
    "local_objects_routes",
    "object_key_for",
    "open_storage",
    "storage_from_url",
    "validate_metadata",
    "validate_object_key",
]
