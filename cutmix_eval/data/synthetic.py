"""The embedded dataset: generated objects whose class is given away by a small part.

Every image shows one **object** on a **cluttered background**:

* the **body** (most of the object's area) is a rounded, possibly tapered blob
  whose aspect, roundness, taper, colour and stripes come from distributions
  shared by all classes, except for the class evidence that ``body_evidence``
  (b in [0, 1]) gives it: its hue is drawn near a hue of its class with
  probability ``BODY_HUE_BIAS + (1 - BODY_HUE_BIAS) b`` (else uniformly), and its
  shape (aspect, roundness, taper) and its stripes (presence, frequency) are each,
  with probability b, drawn near its class's prototype (see :func:`body_prototypes`)
  instead of from the shared distributions. At b = 0 (``synthetic-part``) the weak
  hue bias is all the class information the body carries;
* the **part** is small (its diameter is about a fifth of the body's length, a
  few per cent of the object's area) and its design is unique to the class: a
  saturated colour (brightness jittered by -20 to +5 %), a shape and an anchor
  on the body (one end, the centre, one side, a "shoulder"). Colours and shapes
  are each shared by several classes, only the combination is unique, so a
  classifier has to see the part's shape, not just its colour. The class is
  named after its part, e.g. ``"red-triangle"``;
* the object's length is 35-80 % of the image side (shrunk when a diagonal pose
  would not fit), its orientation is uniform, it is mirrored with probability
  1/2, and it lies fully inside the image;
* the background is a smooth colour field with a grating texture and blotches,
  behind 2-5 **distractor fragments**: body-like blobs cut by a random straight
  line, in body colours or (one in four) in the part colours. No distractor is
  a part shape, so a saturated colour alone is not proof of a part.

Conventions: images are uint8 ``3 x S x S``; ``mask`` is uint8 ``S x S`` with
1 = object (body or part) and 0 = background; ``part_mask`` (same format)
marks the part alone; ``boxes`` is the tight box around the mask in pixel-edge
coordinates (XYXY; a mask spanning columns ``c0..c1`` gives ``x0 = c0, x1 = c1 + 1``),
the continuous convention torchvision's v2 transforms use, so flips, resizes and
crops move it exactly. In the generator's own geometry, pixel ``(row y, column x)``
has its centre at coordinates ``(x, y)``.

Generation is vectorised over chunks of ``CHUNK`` images and deterministic
given (dataset name, split, parameters, ``GENERATOR_VERSION``); results are
cached on disk (see :func:`generate`). ``body_evidence`` does not enter the seed:
one seed gives the same random draws at every level, so raising b only turns
more body cues to their class (the cues that follow at b also follow at any
larger b). ``synthetic-part`` serves ``synthetic``'s images at b = 0, the test
case where the class lives in the part. The OOD companions are
``synthetic-unseen`` (objects with part designs no training class has; their
bodies follow a random training class with the same b),
``synthetic-background`` (the backgrounds alone) and ``photos`` (crops of the
photographs bundled with scikit-learn).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from cutmix_eval.data.base import ImageDataset, Sample, Transform, make_boxes
from cutmix_eval.data.registry import register_dataset
from cutmix_eval.errors import UserError
from cutmix_eval.fileio import atomic_write

#: bump whenever the generated pixels change: it is part of every cache file name
GENERATOR_VERSION = 3
CACHE_ENV = "CUTMIX_EVAL_CACHE"
DEFAULT_CACHE_DIR = "~/.cache/cutmix_eval"
#: images generated per vectorised step
CHUNK = 128
DEFAULT_SAMPLES = {"train": 10_000, "test": 2_000}
OOD_SAMPLES = 2_000
OOD_LABEL = -1
LAYOUT = "built in (generated from a seed)"

#: saturated part colours (RGB in [0, 1]); bodies and backgrounds are muted. Classes
#: use them five at a time (see :func:`class_designs`); distractors use them all.
PART_COLOURS = {
    "red": (0.89, 0.10, 0.11), "yellow": (1.00, 0.87, 0.00), "green": (0.12, 0.70, 0.16),
    "blue": (0.12, 0.27, 0.86), "magenta": (0.94, 0.20, 0.78), "orange": (1.00, 0.50, 0.00),
    "cyan": (0.00, 0.82, 0.90), "purple": (0.51, 0.16, 0.75), "white": (0.98, 0.98, 0.98),
    "black": (0.04, 0.04, 0.04),
}
COLOUR_GROUP = 5
#: where a part sits on the body: (u, v) in the body frame, u along the body's
#: axis in half-lengths, v across it as a fraction of the local half-width
ANCHORS = {"end": (0.72, 0.0), "centre": (0.0, 0.0), "side": (0.05, 0.75), "shoulder": (0.45, 0.6)}
PART_RADIUS = 0.2  # in body half-lengths: the part's diameter is ~20 % of the body's length
PART_REACH = 1.25  # the farthest any part shape reaches, in part radii
SCALE_RANGE = (0.35, 0.80)  # body length / image side
SHIFT_SCALE_RANGE = (0.22, 0.40)  # synthetic-shift: the same objects, drawn smaller
BODY_HUE_BIAS = 0.3  # probability that a body's hue is drawn near its class hue at body_evidence 0
#: the class evidence the body of ``synthetic`` (and its companions) carries unless told
DEFAULT_BODY_EVIDENCE = 1.0
#: the shared body distributions (uniform): half-width in half-lengths, roundness, taper,
#: stripe amplitude (present in half of the bodies) and frequency (in pi per half-length)
ASPECT_RANGE, SQUARENESS_RANGE, TAPER_RANGE = (0.36, 0.68), (0.0, 0.75), (-0.3, 0.3)
STRIPE_AMPLITUDE_RANGE, STRIPE_FREQUENCY_RANGE = (0.0, 0.22), (2.0, 5.0)
#: class-following stripes are never faint: their amplitude is drawn from this range
CLASS_STRIPE_AMPLITUDE_RANGE = (0.11, 0.22)
#: standard deviations around a class prototype: aspect, roundness, taper, stripe frequency
PROTOTYPE_JITTER = (0.02, 0.05, 0.04, 0.15)
#: the classes whose bodies ``synthetic-unseen`` borrows: those of the default ``synthetic``
UNSEEN_BODY_CLASSES = 10
MIN_DISTRACTORS, MAX_DISTRACTORS = 2, 5


# ----------------------------------------------------------------------------- part shapes
# Each shape is a gauge: a function of part-frame coordinates (x along the body's
# axis, y across it; unit = part radius) that is < 1 inside, 1 on the outline and
# grows about one unit per radius outside, so that it also gives anti-aliased edges.

def _disc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hypot(x, y)


def _square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(x), np.abs(y)) / 0.85


def _triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Equilateral, circumradius 1.2, a vertex pointing along +x."""
    return np.maximum(-x, 0.5 * x + 0.866 * np.abs(y)) / 0.6


def _cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    return np.minimum(np.maximum(ax, ay / 0.4), np.maximum(ax / 0.4, ay))


def _ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Outer radius 1, inner radius 0.44."""
    return np.abs(np.hypot(x, y) - 0.72) + 0.72


def _star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Five points, outer radius 1.1."""
    return np.hypot(x, y) / (0.75 + 0.35 * np.cos(5 * np.arctan2(y, x)))


def _bar(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A band across the body, 0.8 x 2.3 radii."""
    return np.maximum(np.abs(x) / 0.4, np.abs(y) / 1.15)


def _half_disc(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Radius 1.1, flat side towards the body's axis."""
    y = y + 0.45
    return np.maximum(np.hypot(x, y) / 1.1, 1.0 - 3.0 * y)


PART_SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "triangle": _triangle, "disc": _disc, "square": _square, "cross": _cross, "ring": _ring,
    "star": _star, "bar": _bar, "half-disc": _half_disc,
}
TRAIN_SHAPES = ("triangle", "disc", "square", "cross", "ring")
UNSEEN_SHAPES = ("star", "bar", "half-disc")


class PartDesign(NamedTuple):
    """What a class's part looks like and where it sits; ``name`` is the class name."""

    colour: str
    shape: str
    anchor: str

    @property
    def name(self) -> str:
        return f"{self.colour}-{self.shape}"


def _designs(count: int, shapes: tuple[str, ...]) -> list[PartDesign]:
    """``count`` distinct designs. Design ``k`` has the colour ``k mod 5`` of a group
    of five colours (the first five colours for the first ``5 * len(shapes)``
    designs, then the next five), the shape ``(k mod 5 + k // 5) mod len(shapes)``
    and the anchor ``k mod 4``: every colour serves several classes, each with a
    different shape, and every (colour, shape) pair occurs at most once."""
    colours, anchors = list(PART_COLOURS), list(ANCHORS)
    per_group = COLOUR_GROUP * len(shapes)
    limit = per_group * len(colours) // COLOUR_GROUP
    if not 1 <= count <= limit:
        raise UserError(f"the embedded dataset has 1 to {limit} part designs, not {count}")
    return [PartDesign(colours[COLOUR_GROUP * (k // per_group) + k % COLOUR_GROUP],
                       shapes[(k % COLOUR_GROUP + k // COLOUR_GROUP) % len(shapes)], anchors[k % len(anchors)])
            for k in range(count)]


def class_designs(num_classes: int = 10) -> list[PartDesign]:
    """The part design of every class of ``synthetic`` (2 to 50 classes)."""
    if num_classes < 2:
        raise UserError(f"the embedded dataset needs at least 2 classes, not {num_classes}")
    return _designs(num_classes, TRAIN_SHAPES)


def unseen_designs(count: int = 10) -> list[PartDesign]:
    """Designs of ``synthetic-unseen``: shapes no training class uses."""
    return _designs(count, UNSEEN_SHAPES)


# ----------------------------------------------------------------------------- geometry

class Pose(NamedTuple):
    """Per-image placement of a shape (arrays of length n): centre in pixels,
    rotation in radians, half-length in pixels, mirror (+1 or -1)."""

    cx: np.ndarray
    cy: np.ndarray
    angle: np.ndarray
    unit: np.ndarray
    flip: np.ndarray


class BodyShape(NamedTuple):
    """Per-image body shape (arrays of length n): half-width in half-lengths,
    roundness (0 = ellipse, 1 = rectangle) and taper (half-width change per
    half-length along the axis)."""

    aspect: np.ndarray
    squareness: np.ndarray
    taper: np.ndarray


def _per_image(values: Any) -> np.ndarray:
    """Length-n values -> float32 ``n x 1 x 1`` to broadcast against ``n x S x S`` grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def to_body_frame(pose: Pose, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(u, v)`` (each ``n x S x S``) of every pixel centre in the frame
    of ``pose``: ``u`` along the rotated axis, ``v`` across it, in half-lengths."""
    grid = np.arange(size, dtype=np.float32)
    dx = grid[None, None, :] - _per_image(pose.cx)
    dy = grid[None, :, None] - _per_image(pose.cy)
    cos, sin, scale = _per_image(np.cos(pose.angle)), _per_image(np.sin(pose.angle)), _per_image(1 / pose.unit)
    u = (dx * cos + dy * sin) * scale
    v = (dy * cos - dx * sin) * (scale * _per_image(pose.flip))
    return u, v


def half_width(u: np.ndarray, shape: BodyShape) -> np.ndarray:
    """The body's half-width at axis position ``u`` (tapered, kept positive)."""
    return _per_image(shape.aspect) * np.maximum(1 + _per_image(shape.taper) * u, 0.05)


def body_level(u: np.ndarray, v: np.ndarray, shape: BodyShape) -> np.ndarray:
    """Gauge of the body (< 1 inside): a blend of an ellipse and a rectangle."""
    au, av = np.abs(u), np.abs(v) / half_width(u, shape)
    mix = _per_image(shape.squareness)
    return (1 - mix) * np.hypot(au, av) + mix * np.maximum(au, av)


def coverage(level: np.ndarray, radius_px: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a gauge whose unit is ``radius_px`` pixels
    (per image); ``coverage >= 0.5`` exactly where ``level <= 1``."""
    return np.clip((1 - level) * _per_image(radius_px) + 0.5, 0, 1)


def paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` (``n x 3`` or ``n x 3 x S x S``) over ``image``
    (``n x 3 x S x S``) in place with per-pixel ``alpha`` (``n x S x S``)."""
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    image += alpha[:, None] * (colour - image)


class Stripes(NamedTuple):
    """Per-image stripes across a body's axis (arrays of length n): amplitude (0 =
    none), frequency in pi per half-length, phase in radians."""

    amplitude: np.ndarray
    frequency: np.ndarray
    phase: np.ndarray


def sample_body_shapes(rng: np.random.Generator, n: int) -> BodyShape:
    """Body shapes from the distributions all classes share."""
    return BodyShape(aspect=rng.uniform(*ASPECT_RANGE, n), squareness=rng.uniform(*SQUARENESS_RANGE, n),
                     taper=rng.uniform(*TAPER_RANGE, n))


def sample_stripes(rng: np.random.Generator, n: int) -> Stripes:
    """Stripes from the distribution all classes share: present in about half of the images."""
    amplitude = rng.uniform(*STRIPE_AMPLITUDE_RANGE, n) * (rng.random(n) < 0.5)
    return Stripes(amplitude, rng.uniform(*STRIPE_FREQUENCY_RANGE, n), rng.uniform(0, 2 * np.pi, n))


def shaded(colour: np.ndarray, u: np.ndarray, level: np.ndarray, stripes: Stripes) -> np.ndarray:
    """A body's colour per pixel (``n x 3 x S x S``): darker towards the outline and
    modulated by ``stripes`` across the axis."""
    waves = np.sin(_per_image(stripes.frequency * np.pi) * u + _per_image(stripes.phase))
    shade = (1 - 0.35 * np.minimum(level, 1) ** 2) * (1 + _per_image(stripes.amplitude) * waves)
    return colour.astype(np.float32)[:, :, None, None] * shade[:, None]


# ----------------------------------------------------------------------------- body evidence

def _prototype_steps(dims: int = 5) -> np.ndarray:
    """``1 / g**j`` for ``j = 1..dims``, ``g`` the root > 1 of ``x**(dims + 1) = x + 1``:
    the steps of Roberts' additive low-discrepancy sequence."""
    g = 1.0
    for _ in range(60):  # fixed-point iteration, converged to machine precision
        g = (1 + g) ** (1 / (dims + 1))
    return g ** -np.arange(1.0, dims + 1)


PROTOTYPE_STEPS = _prototype_steps()


class BodyPrototype(NamedTuple):
    """Per-class body cues (arrays of length n): the shape, whether it is striped and
    its stripe frequency (pi per half-length)."""

    shape: BodyShape
    striped: np.ndarray
    frequency: np.ndarray


def body_prototypes(classes: np.ndarray) -> BodyPrototype:
    """The body prototype of each class index: a fixed function of the index alone (not
    of the number of classes). Class ``k`` takes the point ``t = (0.5 + (k + 1) *
    PROTOTYPE_STEPS) mod 1`` of Roberts' sequence in ``[0, 1)**5``, whose first points lie
    far apart (ten classes: at least 0.6 from each other), and maps ``t[0], t[1], t[2],
    t[4]`` to 10-90 % of the shared range of aspect, roundness, taper and stripe
    frequency; it is striped where ``t[3] < 0.5``."""
    t = (0.5 + np.outer(np.asarray(classes) + 1, PROTOTYPE_STEPS)) % 1

    def inside(column: int, bounds: tuple[float, float]) -> np.ndarray:
        return bounds[0] + (0.1 + 0.8 * t[:, column]) * (bounds[1] - bounds[0])

    shape = BodyShape(inside(0, ASPECT_RANGE), inside(1, SQUARENESS_RANGE), inside(2, TAPER_RANGE))
    return BodyPrototype(shape, t[:, 3] < 0.5, inside(4, STRIPE_FREQUENCY_RANGE))


class ClassCues(NamedTuple):
    """The body cues of n images as their body classes would have them, and which cues
    follow the class (bool arrays ``follows_hue``, ``follows_shape``, ``follows_stripes``);
    where a cue does not follow, the shared draw is used."""

    hue: np.ndarray
    shape: BodyShape
    stripes: Stripes
    follows_hue: np.ndarray
    follows_shape: np.ndarray
    follows_stripes: np.ndarray


def class_cues(rng: np.random.Generator, body_classes: np.ndarray, num_hues: int,
               body_evidence: float) -> ClassCues:
    """Cues near the prototypes of ``body_classes`` (hue ``(k + 0.5) / num_hues``; shape and
    stripe frequency jittered by ``PROTOTYPE_JITTER`` and kept in the shared ranges; stripe
    amplitude in ``CLASS_STRIPE_AMPLITUDE_RANGE`` for striped classes, else 0), each
    followed with probability ``body_evidence``. The draws do not depend on
    ``body_evidence``, so the cues followed at one level are followed at every larger one."""
    n = len(body_classes)
    follows = rng.random((3, n)) < body_evidence
    prototype = body_prototypes(body_classes)
    jitter = rng.normal(0, 1, (4, n)) * np.array(PROTOTYPE_JITTER)[:, None]
    shape = BodyShape(*(np.clip(centre + noise, *bounds) for centre, noise, bounds in
                        zip(prototype.shape, jitter, (ASPECT_RANGE, SQUARENESS_RANGE, TAPER_RANGE))))
    stripes = Stripes(prototype.striped * rng.uniform(*CLASS_STRIPE_AMPLITUDE_RANGE, n),
                      np.clip(prototype.frequency + jitter[3], *STRIPE_FREQUENCY_RANGE), rng.uniform(0, 2 * np.pi, n))
    return ClassCues((body_classes + 0.5) / num_hues, shape, stripes, *follows)


def _choose(follows: np.ndarray, own: tuple, shared: tuple) -> Any:
    """Per image, the fields of ``own`` where ``follows`` else those of ``shared`` (same NamedTuple type)."""
    return type(shared)(*(np.where(follows, a, b) for a, b in zip(own, shared)))


# ----------------------------------------------------------------------------- colours

def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Arrays of hue, saturation, value in [0, 1] -> ``... x 3`` RGB in [0, 1]."""
    k = (np.array([5.0, 3.0, 1.0]) + 6 * np.asarray(h)[..., None]) % 6
    return v[..., None] * (1 - s[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def muted_colours(rng: np.random.Generator, n: int, hue: np.ndarray | None = None) -> np.ndarray:
    """``n x 3`` body/background colours: moderate saturation and value, uniform hue
    unless ``hue`` is given."""
    hue = rng.random(n) if hue is None else hue
    return hsv_to_rgb(hue % 1, rng.uniform(0.15, 0.55, n), rng.uniform(0.4, 0.85, n))


def body_colours(rng: np.random.Generator, class_hue: np.ndarray, follows: np.ndarray) -> np.ndarray:
    """Muted colours whose hue is near ``class_hue`` where ``follows``, else with
    probability ``BODY_HUE_BIAS``, else uniform."""
    n = len(class_hue)
    near = class_hue + rng.normal(0, 0.04, n)
    return muted_colours(rng, n, np.where((rng.random(n) < BODY_HUE_BIAS) | follows, near, rng.random(n)))


def palette(names: list[str] | tuple[str, ...]) -> np.ndarray:
    """``len(names) x 3`` RGB of the named part colours."""
    return np.array([PART_COLOURS[name] for name in names], dtype=np.float32)


# ----------------------------------------------------------------------------- background

def smooth_field(rng: np.random.Generator, n: int, size: int, nodes: int, channels: int) -> np.ndarray:
    """``n x channels x S x S`` standard-normal values on a ``nodes x nodes`` grid,
    smoothly interpolated (normalised Gaussian weights)."""
    centres = np.linspace(0, nodes - 1, size)
    weights = np.exp(-0.5 * ((centres[:, None] - np.arange(nodes)[None, :]) / 0.7) ** 2)
    weights = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
    values = rng.standard_normal((n, channels, nodes, nodes)).astype(np.float32)
    return np.einsum("yi,ncij,xj->ncyx", weights, values, weights, optimize=True)


def backgrounds(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n x 3 x S x S`` float cluttered backgrounds: a smooth colour field, blotches,
    a grating, then the distractor fragments."""
    image = muted_colours(rng, n).astype(np.float32)[:, :, None, None] + 0.12 * smooth_field(rng, n, size, 4, 3)
    grid = np.arange(size, dtype=np.float32)
    angle, frequency = rng.uniform(0, np.pi, n), rng.uniform(0.08, 0.4, n) * 2 * np.pi
    phase = (grid[None, None, :] * _per_image(np.cos(angle) * frequency)
             + grid[None, :, None] * _per_image(np.sin(angle) * frequency))
    texture = _per_image(rng.uniform(0, 0.1, n)) * np.sin(phase) + 0.07 * smooth_field(rng, n, size, 10, 1)[:, 0]
    image *= 1 + texture[:, None]
    add_distractors(image, rng)
    return image


def add_distractors(image: np.ndarray, rng: np.random.Generator) -> None:
    """Paint ``MIN_DISTRACTORS`` to ``MAX_DISTRACTORS`` fragments per image, in
    place: body-like blobs (length 24-60 % of the side, anywhere, possibly cut by
    the border) cut by a random line, in muted colours or, one in four, in a part
    colour. Layer ``k`` is drawn on the images that have more than ``k``."""
    size = image.shape[-1]
    count = rng.integers(MIN_DISTRACTORS, MAX_DISTRACTORS + 1, len(image))
    saturated = palette(list(PART_COLOURS))
    for layer in range(MAX_DISTRACTORS):
        active = np.flatnonzero(count > layer)
        n = len(active)
        pose = Pose(rng.uniform(0, size, n), rng.uniform(0, size, n), rng.uniform(0, 2 * np.pi, n),
                    rng.uniform(0.12, 0.3, n) * size, np.ones(n))
        shape = sample_body_shapes(rng, n)
        u, v = to_body_frame(pose, size)
        cut_angle = rng.uniform(0, 2 * np.pi, n)
        cut = (u * _per_image(np.cos(cut_angle)) + v * _per_image(np.sin(cut_angle))
               - _per_image(rng.uniform(-0.1, 0.8, n)))
        level = np.maximum(body_level(u, v, shape), 1 + cut)
        colour = np.where((rng.random(n) < 0.25)[:, None], saturated[rng.integers(0, len(saturated), n)],
                          muted_colours(rng, n))
        layer_image = image[active]
        paint(layer_image, coverage(level, pose.unit * np.sqrt(shape.aspect)),
              shaded(colour, u, level, sample_stripes(rng, n)))
        image[active] = layer_image


# ----------------------------------------------------------------------------- objects

@dataclass
class Generated:
    """Arrays of a generated set. ``images`` uint8 ``N x 3 x S x S``; ``labels``
    int64 ``N`` (design index, or -1); ``boxes`` float32 ``N x 4``, ``masks`` and
    ``part_masks`` uint8 ``N x S x S`` (None when the set has no object)."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None
    part_masks: np.ndarray | None = None


def object_poses(rng: np.random.Generator, shape: BodyShape, anchors: np.ndarray, radius: np.ndarray,
                 size: int, scale_range: tuple[float, float] = SCALE_RANGE) -> Pose:
    """Random poses keeping body and part inside the image (``anchors`` ``n x 2`` as in
    :data:`ANCHORS`, part ``radius`` in half-lengths): the half-length is
    ``scale_range`` x S / 2, shrunk if the rotated bounding rectangle would not fit."""
    n = len(radius)
    angle = rng.uniform(0, 2 * np.pi, n)
    widest = shape.aspect * (1 + np.abs(shape.taper))
    reach_u = np.maximum(1.0, np.abs(anchors[:, 0]) + PART_REACH * radius)
    reach_v = np.maximum(widest, anchors[:, 1] * widest + PART_REACH * radius)
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    extent_x, extent_y = cos * reach_u + sin * reach_v, sin * reach_u + cos * reach_v
    room = size / 2 - 1.5
    unit = np.minimum(rng.uniform(*scale_range, n) * size / 2, room / np.maximum(extent_x, extent_y))
    margin_x, margin_y = extent_x * unit + 0.5, extent_y * unit + 0.5
    cx = rng.uniform(margin_x, size - 1 - margin_x)
    cy = rng.uniform(margin_y, size - 1 - margin_y)
    return Pose(cx, cy, angle, unit, np.where(rng.random(n) < 0.5, -1.0, 1.0))


def render_objects(rng: np.random.Generator, design_ids: np.ndarray, designs: list[PartDesign],
                   size: int, cues: ClassCues, scale_range: tuple[float, float] = SCALE_RANGE,
                   draw_parts: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one object of design ``designs[design_ids[i]]`` on a fresh background per
    image, its length a ``scale_range`` fraction of the side, its body taking the
    ``cues`` that follow its class. Returns float images ``n x 3 x S x S``, object masks
    and part masks (bool ``n x S x S``). ``draw_parts=False`` leaves the part unpainted
    (the same draws and masks), so the image differs only where the part would be."""
    n = len(design_ids)
    image = backgrounds(rng, n, size)
    shape = _choose(cues.follows_shape, cues.shape, sample_body_shapes(rng, n))
    anchors = np.array([ANCHORS[design.anchor] for design in designs])[design_ids]
    radius = PART_RADIUS * rng.uniform(0.9, 1.1, n)
    pose = object_poses(rng, shape, anchors, radius, size, scale_range)
    u, v = to_body_frame(pose, size)
    body = body_level(u, v, shape)
    class_hue = np.where(cues.follows_hue, cues.hue, (design_ids + 0.5) / len(designs))
    colours = body_colours(rng, class_hue, cues.follows_hue)
    stripes = _choose(cues.follows_stripes, cues.stripes, sample_stripes(rng, n))
    paint(image, coverage(body, pose.unit * np.sqrt(shape.aspect)), shaded(colours, u, body, stripes))

    u0 = _per_image(anchors[:, 0])
    v0 = _per_image(anchors[:, 1]) * half_width(u0, shape)
    pu, pv = (u - u0) / _per_image(radius), (v - v0) / _per_image(radius)
    part = np.empty_like(body)
    shape_of = np.array([design.shape for design in designs])[design_ids]
    for name in np.unique(shape_of):
        chosen = shape_of == name
        part[chosen] = PART_SHAPES[name](pu[chosen], pv[chosen])
    brightness = rng.uniform(0.8, 1.05, (n, 1))
    if draw_parts:
        paint(image, coverage(part, radius * pose.unit),
              np.minimum(palette([design.colour for design in designs])[design_ids] * brightness, 1))
    part_mask = part <= 1
    return image, (body <= 1) | part_mask, part_mask


def finish(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add faint sensor noise and quantise float images to uint8."""
    noise = rng.standard_normal((len(image), 1) + image.shape[2:], dtype=np.float32)
    image += 0.02 * noise
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes (float32 ``n x 4``) around non-empty ``n x H x W`` masks, in
    pixel-edge coordinates: :func:`torchvision.ops.masks_to_boxes` (inclusive pixel
    indices) plus one on ``x1`` and ``y1``."""
    cols, rows = masks.any(axis=1), masks.any(axis=2)
    x0, y0 = cols.argmax(1), rows.argmax(1)
    x1 = masks.shape[2] - cols[:, ::-1].argmax(1)
    y1 = masks.shape[1] - rows[:, ::-1].argmax(1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- builders
# A builder turns (number of samples, parameters, seed sequence) into Generated
# arrays, one independently seeded chunk of CHUNK images at a time.

def balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """``n`` labels in shuffled order, every class ``n // num_classes`` or one more times."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _chunks(seeds: np.random.SeedSequence, n: int) -> list[tuple[slice, np.random.Generator]]:
    starts = range(0, n, CHUNK)
    return [(slice(start, min(start + CHUNK, n)), np.random.default_rng(child))
            for start, child in zip(starts, seeds.spawn(len(starts)))]


def build_objects(n: int, params: dict[str, Any], seeds: np.random.SeedSequence,
                  designs: list[PartDesign], label_samples: bool,
                  scale_range: tuple[float, float] = SCALE_RANGE, body_classes: int | None = None,
                  draw_parts: bool = True) -> Generated:
    """Objects of ``designs``, balanced over them, their length a ``scale_range`` fraction of
    the side; labels are the design indices (``label_samples``) or -1. Bodies carry
    ``params["body_evidence"]`` of the evidence of their own design's class, or, given
    ``body_classes``, of a random one of that many classes. Each chunk draws its body cues
    from its own generator, spawned after all others, so the other draws do not depend on
    them. ``draw_parts``: see :func:`render_objects`."""
    size = params["image_size"]
    design_ids = balanced_labels(np.random.default_rng(seeds.spawn(1)[0]), n, len(designs))
    out = Generated(np.empty((n, 3, size, size), np.uint8),
                    design_ids if label_samples else np.full(n, OOD_LABEL, np.int64),
                    masks=np.empty((n, size, size), np.uint8), part_masks=np.empty((n, size, size), np.uint8))
    chunks = _chunks(seeds, n)
    for (part, rng), cue_seeds in zip(chunks, seeds.spawn(len(chunks))):
        cue_rng, ids = np.random.default_rng(cue_seeds), design_ids[part]
        owners = ids if body_classes is None else cue_rng.integers(0, body_classes, len(ids))
        cues = class_cues(cue_rng, owners, body_classes or len(designs), params["body_evidence"])
        image, masks, part_masks = render_objects(rng, ids, designs, size, cues, scale_range, draw_parts)
        out.images[part], out.masks[part], out.part_masks[part] = finish(image, rng), masks, part_masks
    out.boxes = boxes_from_masks(out.masks.astype(bool))
    return out


def build_backgrounds(n: int, params: dict[str, Any], seeds: np.random.SeedSequence) -> Generated:
    size = params["image_size"]
    images = np.empty((n, 3, size, size), np.uint8)
    for part, rng in _chunks(seeds, n):
        images[part] = finish(backgrounds(rng, part.stop - part.start, size), rng)
    return Generated(images, np.full(n, OOD_LABEL, np.int64))


def build_photos(n: int, params: dict[str, Any], seeds: np.random.SeedSequence) -> Generated:
    """Random square crops (side 48 px to the photo's height, random position,
    mirrored half of the time) of scikit-learn's sample photographs, resized to
    the image size with an antialiasing filter."""
    from sklearn.datasets import load_sample_images  # imported here: slow, and only this set needs it

    size, rng = params["image_size"], np.random.default_rng(seeds)
    photos = [Image.fromarray(photo) for photo in load_sample_images().images]
    images = np.empty((n, 3, size, size), np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(48, photo.height + 1))
        left, top = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
        crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[i] = np.asarray(crop).transpose(2, 0, 1)
    return Generated(images, np.full(n, OOD_LABEL, np.int64))


#: name -> builder(n, params, seeds); the sets with objects also take ``draw_parts=False``
BUILDERS: dict[str, Callable[..., Generated]] = {
    "synthetic": lambda n, p, s, **o: build_objects(n, p, s, class_designs(p["num_classes"]), True, **o),
    "synthetic-unseen": lambda n, p, s, **o: build_objects(n, p, s, unseen_designs(), False,
                                                           body_classes=UNSEEN_BODY_CLASSES, **o),
    "synthetic-shift": lambda n, p, s, **o: build_objects(n, p, s, class_designs(p["num_classes"]), True,
                                                          SHIFT_SCALE_RANGE, **o),
    "synthetic-background": build_backgrounds,
    "photos": build_photos,
}
#: settings that change what the random draws become, not the draws: they name the cache
#: file but do not seed the generator (see the module docstring)
UNSEEDED = ("body_evidence",)


# ----------------------------------------------------------------------------- cache

def cache_dir() -> Path:
    """``$CUTMIX_EVAL_CACHE`` if set, else ``~/.cache/cutmix_eval``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _to_npz(data: Generated) -> dict[str, np.ndarray]:
    arrays = {"images": data.images, "labels": data.labels}
    if data.masks is not None:
        arrays.update(boxes=data.boxes, masks=np.packbits(data.masks, axis=-1),
                      part_masks=np.packbits(data.part_masks, axis=-1))
    return arrays


def _from_npz(path: Path, n: int, size: int) -> Generated:
    """Read a cache file; a ValueError if its arrays do not have the expected shapes."""
    with np.load(path, allow_pickle=False) as npz:
        data = Generated(npz["images"], npz["labels"])
        if "masks" in npz:
            data.boxes = npz["boxes"]
            data.masks = np.unpackbits(npz["masks"], axis=-1, count=size)
            data.part_masks = np.unpackbits(npz["part_masks"], axis=-1, count=size)
    if data.images.shape != (n, 3, size, size) or data.labels.shape != (n,):
        raise ValueError(f"unexpected shapes {data.images.shape}, {data.labels.shape}")
    return data


def _digest(name: str, split: str, params: dict[str, Any]) -> str:
    key = json.dumps({"version": GENERATOR_VERSION, "dataset": name, "split": split, **params}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()


def generate(name: str, split: str, num_samples: int, cache: bool = True, draw_parts: bool = True,
             **params: Any) -> Generated:
    """The arrays of generated set ``name`` (a key of :data:`BUILDERS`).

    Deterministic given ``(name, split, num_samples, params, GENERATOR_VERSION)``,
    which also name the cache file ``<name>-<split>-<sha256 prefix>.npz`` under
    :func:`cache_dir`; the seed is the SHA-256 of the same key less the
    :data:`UNSEEDED` settings. The file is written atomically; one that cannot be
    read is regenerated and replaced; a cache folder that cannot be written only
    costs a warning. ``cache=False`` neither reads nor writes it.
    ``draw_parts=False`` (sets with objects only; never cached) draws the same
    images with every object's part left unpainted, for the evidence probe.
    """
    params = dict(params, num_samples=num_samples)
    cache = cache and draw_parts
    path = cache_dir() / f"{name}-{split}-{_digest(name, split, params)[:20]}.npz"
    if cache and path.exists():
        try:
            return _from_npz(path, num_samples, params["image_size"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable or stale: regenerate below
    seed = _digest(name, split, {k: v for k, v in params.items() if k not in UNSEEDED})
    data = BUILDERS[name](num_samples, params, np.random.SeedSequence(int(seed[:32], 16)),
                          **({} if draw_parts else {"draw_parts": False}))
    if cache:
        try:
            arrays = _to_npz(data)
            atomic_write(path, lambda file: np.savez(file, **arrays))
        except UserError as err:  # atomic_write's error for an unwritable folder; its cause says why
            warnings.warn(f"cannot write the dataset cache {path} ({err.__cause__}); set ${CACHE_ENV} to a writable "
                          "folder",
                          stacklevel=2)
    return data


# ----------------------------------------------------------------------------- datasets

class GeneratedDataset(ImageDataset):
    """A generated set held in memory. Samples carry ``image`` (uint8 before the
    base class converts it), ``label`` and, for sets with objects, ``boxes``,
    ``mask`` and ``part_mask`` (a ``tv_tensors.Mask`` of the discriminative part,
    so it follows geometric transforms like ``mask``). Boxes are pixel-edge
    coordinates (``box_convention = "edges"``)."""

    box_convention = "edges"

    def __init__(self, name: str, split: str, data: Generated, classes: list[str],
                 transform: Transform | None, settings: dict[str, Any]):
        super().__init__(split, transform)
        self.name, self.data, self.classes, self.settings = name, data, classes, settings
        self.has_boxes = self.has_masks = data.masks is not None

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels

    @property
    def identity(self) -> dict[str, Any]:
        """The generator's settings: they determine every pixel (see :func:`generate`)."""
        return {"generated": self.name, "generator_version": GENERATOR_VERSION, **self.settings}

    def __len__(self) -> int:
        return len(self.data.labels)

    def load(self, index: int) -> Sample:
        data = self.data
        sample: Sample = {"image": tv_tensors.Image(torch.from_numpy(data.images[index])),
                          "label": int(data.labels[index])}
        if self.has_masks:
            size = data.images.shape[-1]
            sample["boxes"] = make_boxes(data.boxes[index], size, size)
            sample["mask"] = tv_tensors.Mask(torch.from_numpy(data.masks[index]))
            sample["part_mask"] = tv_tensors.Mask(torch.from_numpy(data.part_masks[index]))
        return sample


def _check(image_size: int, num_samples: int) -> None:
    if image_size < 16:
        raise UserError(f"image_size must be at least 16, not {image_size}")
    if num_samples < 1:
        raise UserError(f"num_samples must be positive, not {num_samples}")


def _evidence(body_evidence: float) -> float:
    """``body_evidence`` as a float (so that 0 and 0.0 name one cache file), checked to lie in [0, 1]."""
    if isinstance(body_evidence, bool) or not isinstance(body_evidence, (int, float)) \
            or not 0 <= body_evidence <= 1:
        raise UserError(f"body_evidence must be a number from 0 to 1, not {body_evidence!r}")
    return float(body_evidence)


def _make(name: str, split: str, classes: list[str], transform: Transform | None | str,
          num_samples: int, cache: bool, source: str | None = None, **params: Any) -> GeneratedDataset:
    """Dataset ``name`` serving the arrays of generated set ``source`` (default ``name``)."""
    _check(params["image_size"], num_samples)
    data = generate(source or name, split, num_samples, cache=cache, **params)
    return GeneratedDataset(name, split, data, classes, None if transform == "default" else transform,
                            settings={"num_samples": num_samples, **params})


def _embedded(name: str, split: str, splits: tuple[str, ...], transform: Transform | None | str,
              image_size: int, num_classes: int, seed: int, num_samples: int | None, cache: bool,
              body_evidence: float, source: str | None = None) -> GeneratedDataset:
    """A set of the embedded classes (see :func:`_make`)."""
    if split not in splits:
        raise UserError(f"{name} has splits {', '.join(splits)}, not {split!r}")
    classes = [design.name for design in class_designs(num_classes)]
    count = DEFAULT_SAMPLES[split] if num_samples is None else num_samples
    return _make(name, split, classes, transform, count, cache, source, image_size=image_size,
                 num_classes=num_classes, seed=seed, body_evidence=_evidence(body_evidence))


@register_dataset("synthetic", layout=LAYOUT, splits=("train", "test"),
                  description="embedded generated objects with a small class-giving part; boxes and masks")
def synthetic(split: str, root: Path | None = None, *, transform: Transform | None | str = "default",
              image_size: int = 64, num_classes: int = 10, seed: int = 0, num_samples: int | None = None,
              cache: bool = True, body_evidence: float = DEFAULT_BODY_EVIDENCE) -> GeneratedDataset:
    """The embedded classification set (``root`` is ignored: nothing is read); its bodies
    carry ``body_evidence`` of their class's evidence (see the module docstring)."""
    return _embedded("synthetic", split, tuple(DEFAULT_SAMPLES), transform, image_size, num_classes, seed,
                     num_samples, cache, body_evidence)


@register_dataset("synthetic-part", layout=LAYOUT, splits=("train", "test"),
                  description="synthetic with body_evidence 0: the class lives in the small part (the body "
                              "only leans to a class hue), the test case of saliency-guided mixing")
def synthetic_part(split: str, root: Path | None = None, *, transform: Transform | None | str = "default",
                   image_size: int = 64, num_classes: int = 10, seed: int = 0, num_samples: int | None = None,
                   cache: bool = True) -> GeneratedDataset:
    """The images of :func:`synthetic` at ``body_evidence=0`` (the same arrays and cache
    file as ``synthetic:body_evidence=0``), under a name of their own (``root`` is ignored)."""
    return _embedded("synthetic-part", split, tuple(DEFAULT_SAMPLES), transform, image_size, num_classes, seed,
                     num_samples, cache, 0.0, source="synthetic")


@register_dataset("synthetic-shift", layout=LAYOUT, splits=("test",),
                  description="natural-shift companion of synthetic: the same classes, objects drawn smaller "
                              f"({int(100 * SHIFT_SCALE_RANGE[0])}-{int(100 * SHIFT_SCALE_RANGE[1])} % of the side "
                              f"instead of {int(100 * SCALE_RANGE[0])}-{int(100 * SCALE_RANGE[1])} %)")
def synthetic_shift(split: str, root: Path | None = None, *, transform: Transform | None | str = "default",
                    image_size: int = 64, num_classes: int = 10, seed: int = 0, num_samples: int | None = None,
                    cache: bool = True, body_evidence: float = DEFAULT_BODY_EVIDENCE) -> GeneratedDataset:
    """The embedded classes under a scale shift: the objects of :func:`synthetic`, smaller
    (``SHIFT_SCALE_RANGE`` of the side), so its parts are harder to see (``root`` is ignored)."""
    return _embedded("synthetic-shift", split, ("test",), transform, image_size, num_classes, seed,
                     num_samples, cache, body_evidence)


#: the OOD companions: name -> description
OOD_COMPANIONS = {
    "synthetic-unseen": "near OOD: embedded objects whose part designs no class of synthetic has",
    "synthetic-background": "OOD: the embedded dataset's cluttered backgrounds with no object",
    "photos": "far OOD: random crops of the photographs bundled with scikit-learn",
}


def _register_ood(name: str, description: str) -> Callable[..., GeneratedDataset]:
    """Register companion ``name``, a set without objects."""

    def factory(split: str, root: Path | None = None, *, transform: Transform | None | str = "default",
                image_size: int = 64, seed: int = 0, num_samples: int = OOD_SAMPLES,
                cache: bool = True) -> GeneratedDataset:
        return _make(name, split, [], transform, num_samples, cache, image_size=image_size, seed=seed)

    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = f"{description[0].upper()}{description[1:]} (label -1; ``root`` is ignored)."
    return register_dataset(name, layout=LAYOUT, splits=("test",), kind="ood", description=description)(factory)


@register_dataset("synthetic-unseen", layout=LAYOUT, splits=("test",), kind="ood",
                  description=OOD_COMPANIONS["synthetic-unseen"])
def synthetic_unseen(split: str, root: Path | None = None, *, transform: Transform | None | str = "default",
                     image_size: int = 64, seed: int = 0, num_samples: int = OOD_SAMPLES, cache: bool = True,
                     body_evidence: float = DEFAULT_BODY_EVIDENCE) -> GeneratedDataset:
    """Near OOD: objects with the parts of :func:`unseen_designs` on bodies carrying
    ``body_evidence`` of the evidence of a random class among the first
    ``UNSEEN_BODY_CLASSES`` of ``synthetic``: only the part is new (label -1; ``root`` is ignored)."""
    return _make("synthetic-unseen", split, [], transform, num_samples, cache, image_size=image_size, seed=seed,
                 body_evidence=_evidence(body_evidence))


OOD_FACTORIES = {"synthetic-unseen": synthetic_unseen,
                 **{name: _register_ood(name, OOD_COMPANIONS[name]) for name in ("synthetic-background", "photos")}}
