"""Datasets: a registry of loaders that read local files (never download) plus the
embedded procedurally generated dataset. See :mod:`cutmix_eval.data.base` for the
sample convention."""

from cutmix_eval.data.base import (DATA_ROOT_ENV, ImageDataset, collate_samples, eval_transform,
                                   resolve_data_root)
from cutmix_eval.data.registry import create_dataset, dataset_spec, list_datasets, register_dataset

# importing the families fills the registry
from cutmix_eval.data import cifar, cub, imagefolder, ood, synthetic  # noqa: E402,F401

__all__ = ["DATA_ROOT_ENV", "ImageDataset", "collate_samples", "create_dataset", "dataset_spec",
           "eval_transform", "list_datasets", "register_dataset", "resolve_data_root"]
