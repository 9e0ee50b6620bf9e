"""Models: an architecture registry (our CIFAR nets, PyramidNet, the kuangliu/pytorch-cifar
ResNets, Wide ResNets, gapnet, any timm or torchvision classifier) behind one pixel-space
interface, and checkpoint I/O."""

from cutmix_eval.models.classifier import Classifier
from cutmix_eval.models.registry import (create_model, format_arch, list_models, model_spec, parse_arch,
                                         register_model)

# importing the families fills the registry; external first, so that its timm detector is asked
# first and a timm model name recorded in a checkpoint outranks what the tensor shapes suggest
# importing the families fills the registry (which family answers first does not matter: a model name
# recorded in the file outranks tensor shapes, and two families claiming one file is an error)
from cutmix_eval.models import (cifar_resnet, densenet, external, gapnet, kuangliu, openmixup,  # noqa: E402,F401
                                pyramidnet, resnext, wideresnet, wideresnet_puzzlemix)

__all__ = ["Classifier", "create_model", "format_arch", "list_models", "model_spec", "parse_arch",
           "register_model"]
