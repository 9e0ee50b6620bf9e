"""The successors of CutMix, one module per method (or family); the base class, the
shared helpers and the paper's four methods are in :mod:`cutmix_eval.train.mixing`,
the registry of every method in :mod:`cutmix_eval.train.methods`."""
