"""The 19 common corruptions (Hendrycks & Dietterich 2019) as batched torch operations,
with both severity tables (CIFAR-10-C/100-C at 32 px and ImageNet-C at 224 px)."""

from cutmix_eval.corruptions.registry import (ALL, BENCHMARK, GROUPS, SEVERITIES, Corruption, corrupt,
                                              get_corruption, list_corruptions, resolve_table)

__all__ = ["ALL", "BENCHMARK", "GROUPS", "SEVERITIES", "Corruption", "corrupt", "get_corruption",
           "list_corruptions", "resolve_table"]
