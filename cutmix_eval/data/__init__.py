"""Datasets: a registry of loaders that read local files (never download) plus the
embedded procedurally generated dataset. See :mod:`cutmix_eval.data.base` for the
sample convention."""

from cutmix_eval.data.base import (DATA_ROOT_ENV, ImageDataset, collate_samples, eval_transform,
                                   resolve_data_root)
from cutmix_eval.data.registry import create_dataset, dataset_spec, list_datasets, register_dataset
from cutmix_eval.data.corrupted import CorruptedDataset, corrupt_indexed, corrupted_slices, image_seed

# importing the families fills the registry
from cutmix_eval.data import (cifar, corrupted, cub, imagefolder, imagenet, ood, openood, shift,  # noqa: E402,F401
                              synthetic)

__all__ = ["DATA_ROOT_ENV", "CorruptedDataset", "ImageDataset", "collate_samples", "corrupt_indexed",
           "corrupted_slices", "create_dataset", "dataset_spec", "eval_transform", "image_seed", "list_datasets",
           "register_dataset", "resolve_data_root"]
