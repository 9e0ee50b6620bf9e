"""Native CAM costs (almost) nothing beyond the forward pass; Grad-CAM costs a backward.

Images per second on the same batch and targets of plain inference (``model(x)``
in inference mode), our native CAM (logits + maps in that one pass),
pytorch-grad-cam's ``GradCAM`` used as its README shows (hooks on the trunk's last
block, a context manager, one ``ClassifierOutputTarget`` per image) and our
``gradcam`` adapter (the same library, backward through the head only). Blocks of
calls alternate between the variants for several rounds, so the machine's drift
cancels; medians are reported. Targets: native CAM at least 0.8 of plain
inference and at least 2.5 times pytorch-grad-cam's GradCAM.

    .venv/bin/python benchmarks/bench_cam.py [--quick]
"""

from __future__ import annotations


import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cutmix_eval.cam import create_cam
from _common import alternating_medians, markdown_table, parse_rounds, print_summary, throughput_comparisons, verdict
from cutmix_eval.models import create_model

TARGET_VS_INFERENCE = 0.8
TARGET_VS_GRADCAM = 2.5
#: the module whose output is the last feature map, as a pytorch-grad-cam user would pick it
LAST_BLOCK = {"gapnet": lambda model: model.net.body[-1], "cifar_resnet56": lambda model: model.net.layer3[-1]}


def plain_inference(model):
    def run(x, y):
        with torch.inference_mode():
            model(x)
    return run


def library_gradcam(model, arch):
    def run(x, y):
        with GradCAM(model=model, target_layers=[LAST_BLOCK[arch](model)]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in y])
    return run


def bench(arch: str, size: int, batch: int, rounds: int, calls: int) -> list[dict]:
    torch.manual_seed(0)
    model = create_model(arch, 10).eval()
    x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
    variants = {"plain inference": plain_inference(model),
                "native CAM (ours)": create_cam("cam", model),
                "GradCAM (pytorch-grad-cam)": library_gradcam(model, arch),
                "gradcam (ours, via the library)": create_cam("gradcam", model)}
    speed = alternating_medians(variants, x, y, rounds, calls)
    return [{"model": f"{arch} {size}px batch {batch}", "variant": name, "images/s": s,
             "vs inference": s / speed["plain inference"],
             "vs GradCAM": s / speed["GradCAM (pytorch-grad-cam)"]} for name, s in speed.items()]


def main() -> None:
    rounds, calls = parse_rounds(__doc__, quick=(3, 2), full=(7, 4))
    rows = bench("gapnet", 64, 128, rounds, calls) + bench("cifar_resnet56", 32, 64, rounds, calls)
    print(f"# CAM: native vs Grad-CAM (medians of {rounds} alternating rounds of {calls} calls, "
          f"{torch.get_num_threads()} CPU threads)\n")
    print(markdown_table(rows, {"model": "", "variant": "", "images/s": ".0f", "vs inference": ".3f",
                                "vs GradCAM": ".2f"}))
    native = [r for r in rows if r["variant"] == "native CAM (ours)"]
    vs_inference = min(r["vs inference"] for r in native)
    vs_gradcam = min(r["vs GradCAM"] for r in native)
    print(f"\nTarget: native CAM >= {TARGET_VS_INFERENCE} x plain inference: "
          f"{verdict(vs_inference, TARGET_VS_INFERENCE)} (worst ratio {vs_inference:.3f}); "
          f">= {TARGET_VS_GRADCAM} x pytorch-grad-cam GradCAM: "
          f"{verdict(vs_gradcam, TARGET_VS_GRADCAM)} (worst ratio {vs_gradcam:.2f}).")
    print_summary(throughput_comparisons(rows, "native CAM (ours)", "native CAM",
                                         (("plain inference", "vs inference", TARGET_VS_INFERENCE),
                                          ("GradCAM (pytorch-grad-cam)", "vs GradCAM", TARGET_VS_GRADCAM))))

if __name__ == "__main__":
    main()
