"""Weather corruptions, batched in torch (see :mod:`cutmix_eval.corruptions.registry`)."""
