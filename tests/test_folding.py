"""Batch norm folded into convolutions: the same function and input gradients, only where exact."""

import pytest
import torch
from torch import nn

from cutmix_eval.evaluate.attacks import loss_gradient
from cutmix_eval.models import create_model
from cutmix_eval.models.classifier import Classifier
from cutmix_eval.models.folding import fold_batchnorm, foldable_pairs


def with_statistics(model: Classifier, seed: int = 0) -> Classifier:
    """Non-trivial running statistics and affine parameters (fresh ones fold to identity)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(shape, generator=generator))
            module.bias.data.copy_(torch.rand(shape, generator=generator) - 0.5)
    return model.eval()


def norms(model: nn.Module) -> int:
    return sum(type(m) is nn.BatchNorm2d for m in model.modules())


@pytest.mark.parametrize("arch, size, left", [("gapnet:width=8", 64, 0), ("cifar_resnet20", 32, 0),
                                              ("pyramidnet:depth=20,alpha=24,bottleneck=false", 32, 10),
                                              ("torchvision/resnet18", 64, 0)])
def test_same_logits_and_input_gradients(arch, size, left):
    """Every conv -> BN pair folds (PyramidNet's BN -> conv pre-activations stay, 3 per
    block + the final one); logits and input gradients agree to float rounding."""
    torch.manual_seed(0)
    model = with_statistics(create_model(arch, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert norms(folded) == left < norms(model)
    images, labels = torch.rand(6, 3, size, size), torch.randint(0, 10, (6,))
    logits, grad = loss_gradient(model, images, labels)
    folded_logits, folded_grad = loss_gradient(folded, images, labels)
    torch.testing.assert_close(folded_logits, logits, rtol=1e-5, atol=1e-5 * logits.abs().max().item())
    torch.testing.assert_close(folded_grad, grad, rtol=1e-4, atol=1e-5 * grad.abs().max().item())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert type(folded.net) is type(model.net) and folded.features(images).shape == model.features(images).shape


class Branching(nn.Module):
    """A conv feeding a BN and something else, a BN subclass, and one traceable pair."""

    def __init__(self):
        super().__init__()
        self.shared, self.norm_shared = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.sub, self.norm_sub = nn.Conv2d(4, 4, 1), type("NormAct", (nn.BatchNorm2d,), {})(4)
        self.plain, self.norm_plain = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.shared(x)
        y = self.norm_shared(y) + y
        return self.norm_plain(self.plain(self.norm_sub(self.sub(y))))


def test_only_exact_pairs_fold():
    assert foldable_pairs(Branching().eval()) == [("plain", "norm_plain")]
    assert foldable_pairs(Branching().train()) == []  # training-mode BN normalizes by the batch


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.norm(self.conv(x)) if x.sum() > 0 else x


def test_untraceable_nets_are_left_as_they_are():
    net = DataDependent().eval()
    assert foldable_pairs(net) == []
    model = Classifier.__new__(Classifier)
    nn.Module.__init__(model)
    model.net = net
    assert fold_batchnorm(model) is model
