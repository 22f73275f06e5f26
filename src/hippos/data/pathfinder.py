"""Generated Pathfinder / Path-X images (Long Range Arena), re-implemented from the specification.

The task (Linsley et al. 2018, "Learning long-range spatial dependencies with horizontal gated
recurrent units"; LRA, Tay et al. 2021, arXiv 2011.04006; S4, arXiv 2111.00396 §4.2): a
grayscale square image holds two long dashed curves ("snakes" of short "paddles"), distractor
snakes, single-paddle clutter and two round markers; the label is 1 when both markers sit on the
ends of the **same** snake. LRA "Pathfinder" is the 32 px hard set (contour length 14, a
length-1,024 sequence), "Path-X" the 128 px one (16,384). The released files are not
obtainable here; this module follows the written specification ``LRA-GENERATORS.md`` (read from
drewlinsley/pathfinder ``snakes2.py`` and LRA ``pathfinder.py``), no code copied.

One image (``generate_image``), coordinates ``(y, x)`` integers, angles in radians:

1. draw the margin m; an occupancy mask (0..255, 1.0 = 255) starts as a border of width
   ``padding``, the image (float) as 0;
2. a *paddle* from point s with orientation θ is the line s → ``translate(s, θ, L)`` drawn at
   ``antialias_scale`` A with width ``round(t·A)`` and Lanczos-downsampled; its occupancy mask
   is the same line dilated by a disc of radius m·A, downsampled the same way. Image and mask
   are combined by pixel-wise max; a paddle *fits* where ``max(mask + paddle_mask) < 1.8``;
3. two target snakes: A's first paddle at a tail drawn uniformly among the tails where it fits
   inside a border of ``2·seed_distance``; B's tail ``seed_distance`` from A's; each is then
   extended in turn, one paddle at a time, to ``contour_length`` paddles: the next head is
   drawn on the circle of radius L+m around ``pivot + (L+2m)·dir``, candidates weighted by
   ``(1 - dilated mask)·max(cos(min(|Δθ|·continuity, π/2)), 0)²``; a paddle that does not
   fit is redrawn (``max_paddle_retrial``), a snake's previous paddle joins the mask only once
   the next is accepted (a snake may touch its own last dash, not older ones); any failure
   restarts the pair;
4. ``num_distractor_snakes`` snakes of ``distractor_length`` paddles, then (``use_single_paddles``)
   one-paddle snakes, each seeded among the free tails of a 1-px-bordered mask, until the
   paddle budget ``int(150 / ((7.5 + 13m + 4m²)/123.5)) - 2·contour - distractors`` is spent
   or fewer than ``stop_with_availability`` of the pixels are free;
5. markers (antialiased discs of ``marker_radius``) on the origin tip of snake o and on the
   terminal tip of snake o (label 1) or 1-o (label 0), max-combined; the image is rescaled
   min..max to 0..255 (as ``scipy.misc.imsave`` did).

Where the specification leaves room (each choice is marked ``# spec:`` below): a snake is also
kept off the *other* target snake's newest paddle, and B's first paddle must fit beside A's;
"free" pixels (for the 1 % stop) are those whose margin-dilated mask is below 0.5; seed tails
are free when the paddle fits there by the same 1.8 rule; a target pair that fails
``max_target_contour_retrial + 1`` times redraws the margin and starts again (the original left
the image empty and the loaders filtered it out); a distractor snake draws one snake contrast,
every paddle its own paddle contrast; markers have intensity 1.

At 32 px (m = 1) the fit rule is porous: a line pixel (1.0) beside a Lanczos-blurred mask edge
(0.6 .. 0.78) sums below 1.8, so dashes of different snakes can sit 1 px apart and a snake can
pass through the 2 px gap between another's dashes: the two target snakes meet in about 13 %
of images (measured on 300). At 32 px the 2·seed_distance border puts A's origin in the
central 4 x 4 pixels, and ~3 % of target-pair attempts reach 14 paddles each (three quarters
of the failures run into the image edge).

Every image i of a set is a pure function of ``(seed, i)``: its generator is
``PCG64(SeedSequence([seed, i]))``, which also draws its label (0 or 1, probability 1/2), so sets
are prefix-stable and can be split across processes (``workers``) with identical results.
Speed (one process, 2026-12-03, 2-core CPU, shared with background runs): 23 ms of CPU per
32 px hard image (about 44 images/s; 21/s wall-clock under that load), so the 200,000-image set
takes ~1.3 h of CPU; 0.47 s per 64 px and 0.34 s per 128 px hard image (most of it in restarts
of the target pair). ``load_pathfinder`` caches a set on disk.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from hippos.data.gen_cache import cached_arrays

__all__ = [
    "PRESETS",
    "PathfinderDataConfig",
    "PathfinderParams",
    "generate_image",
    "generate_pathfinder",
    "load_pathfinder",
    "preset",
    "set_image",
    "total_num_paddles",
]

_FULL = 255  # masks are kept in 0..255 (PIL's scale) so the fit test is exact integer arithmetic
_FIT = round(1.8 * _FULL)  # a paddle fits where max(mask + paddle_mask) < 1.8, i.e. < 459
_FREE = _FULL // 2  # spec: a pixel is free where the margin-dilated mask is below 0.5


@dataclass(frozen=True)
class PathfinderParams:
    """All parameters of the generator; the defaults are LRA's 32 px hard set (``PRESETS[32]``).

    Names follow the original ``Args``; lengths are in output pixels.
    """

    window_size: int = 32  # S: the image is S x S
    padding: int = 1  # width of the border kept free of paddles
    antialias_scale: int = 2  # A: paddles and markers are drawn A times larger, then Lanczos-downsampled
    seed_distance: int = 7  # distance between the two target snakes' origin tips
    marker_radius: float = 1.5
    contour_length: int = 14  # paddles per target snake (6 easy, 9 intermediate, 14 hard)
    distractor_length: int = 4  # paddles per distractor snake (contour_length // 3)
    num_distractor_snakes: int = 5
    snake_contrast_list: tuple[float, ...] = (2.0,)
    use_single_paddles: bool = True  # fill the rest with one-paddle distractors
    max_target_contour_retrial: int = 4
    max_distractor_contour_retrial: int = 4
    max_paddle_retrial: int = 2
    continuity: float = 1.0  # larger: straighter snakes (turns above π/(2·continuity) are excluded)
    paddle_length: int = 2  # L
    paddle_thickness: float = 0.5  # t; t·A must be an integer
    paddle_margin_list: tuple[int, ...] = (1,)  # m, drawn per image
    paddle_contrast_list: tuple[float, ...] = (0.75,)
    stop_with_availability: float = 0.01  # stop adding distractors below this fraction of free pixels

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_list"):
                if isinstance(v, (str, bytes)) or not hasattr(v, "__len__") or len(v) == 0:
                    raise ValueError(f"{f.name} must be a non-empty list of numbers, got {v!r}")
                v = tuple(e.item() if isinstance(e, np.generic) else e for e in v)
                object.__setattr__(self, f.name, v)
                if not all(isinstance(e, numbers.Real) and not isinstance(e, bool) and math.isfinite(e) and e > 0
                           for e in v):
                    raise ValueError(f"{f.name} must hold finite numbers > 0, got {v!r}")
            elif f.type == "int":
                lo = {"window_size": 8, "padding": 0, "antialias_scale": 1, "seed_distance": 1, "contour_length": 1,
                      "distractor_length": 1, "paddle_length": 1}.get(f.name, 0)
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                    raise ValueError(f"{f.name} must be an integer >= {lo}, got {v!r}")
                object.__setattr__(self, f.name, int(v))
            elif f.type == "float":
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
                    raise ValueError(f"{f.name} must be a finite number > 0, got {v!r}")
            elif not isinstance(v, bool):
                raise ValueError(f"{f.name} must be True or False, got {v!r}")
        if not all(isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in self.paddle_margin_list):
            raise ValueError(f"paddle_margin_list must hold integers >= 1, got {self.paddle_margin_list!r}")
        if self.stop_with_availability >= 1:
            raise ValueError(f"stop_with_availability must be in (0, 1), got {self.stop_with_availability!r}")
        ta = self.paddle_thickness * self.antialias_scale
        if abs(ta - round(ta)) > 1e-9:
            raise ValueError(f"paddle_thickness x antialias_scale must be an integer, got "
                             f"{self.paddle_thickness} x {self.antialias_scale} = {ta}")
        if 2 * self.seed_distance + 2 >= self.window_size:
            raise ValueError(f"seed_distance {self.seed_distance} leaves no room for the first target paddle in a "
                             f"{self.window_size} px window (needs 2*seed_distance + 2 < window_size)")

    def to_dict(self) -> dict:
        """The parameters as JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# The LRA overrides per resolution (hard set). num_distractor_snakes is written there as
# ``K // distractor_length`` (20//4, 22//4, 35//4): _DISTRACTOR_BUDGET holds K.
_DISTRACTOR_BUDGET = {32: 20, 64: 22, 128: 35}
PRESETS: dict[int, PathfinderParams] = {
    32: PathfinderParams(),
    64: PathfinderParams(window_size=64, padding=1, antialias_scale=2, paddle_margin_list=(1,), seed_distance=12,
                         marker_radius=2.5, paddle_length=5, paddle_thickness=1.0, continuity=1.8,
                         distractor_length=4, num_distractor_snakes=22 // 4, snake_contrast_list=(0.8,),
                         paddle_contrast_list=(1.0,)),
    128: PathfinderParams(window_size=128, padding=1, antialias_scale=2, paddle_margin_list=(2, 3), seed_distance=20,
                          marker_radius=3.0, paddle_length=5, paddle_thickness=1.5, continuity=1.8,
                          distractor_length=4, num_distractor_snakes=35 // 4, snake_contrast_list=(0.9,),
                          paddle_contrast_list=(1.0,)),
}


def preset(resolution: int = 32, contour_length: int = 14) -> PathfinderParams:
    """LRA's parameters at ``resolution`` (32, 64 or 128) for a difficulty: ``contour_length``
    6 (easy, ``curv_baseline``), 9 (intermediate) or 14 (hard, LRA's). ``distractor_length`` is
    ``contour_length // 3`` and ``num_distractor_snakes`` keeps LRA's ``K // distractor_length``.
    """
    if resolution not in PRESETS:
        raise ValueError(f"resolution must be one of {sorted(PRESETS)}, got {resolution!r}")
    if isinstance(contour_length, bool) or not isinstance(contour_length, (int, np.integer)) or contour_length < 3:
        raise ValueError(f"contour_length must be an integer >= 3 (6, 9 or 14 in LRA), got {contour_length!r}")
    dl = int(contour_length) // 3
    return replace(PRESETS[resolution], contour_length=int(contour_length), distractor_length=dl,
                   num_distractor_snakes=_DISTRACTOR_BUDGET[resolution] // dl)


def total_num_paddles(margin: int) -> int:
    """The paddle budget of an image: 756, 374, 224, 150 for margins 1, 2, 3, 4."""
    return int(150 / ((7.5 + 13 * margin + 4 * margin * margin) / 123.5))


# ---------------------------------------------------------------- drawing primitives


def _translate(y: int, x: int, theta: float, d: float) -> tuple[int, int]:
    return math.ceil(y + d * math.sin(theta)), math.ceil(x + d * math.cos(theta))


def _flip(theta: float) -> float:
    return theta + math.pi if theta < 0 else theta - math.pi


def _disc(r: float) -> np.ndarray:
    """``x² + y² <= r²`` on the integer grid: bool (2k+1, 2k+1), k = floor(r)."""
    k = math.floor(r)
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    return yy * yy + xx * xx <= r * r


def _down(hi: np.ndarray, side: int) -> np.ndarray:
    """bool/u8 (n n) at scale A -> int32 (side side) in 0..255 by Lanczos (PIL, clipped to u8)."""
    im = Image.fromarray(np.where(hi, 255, 0).astype(np.uint8) if hi.dtype == bool else hi)
    return np.asarray(im.resize((side, side), Image.LANCZOS), dtype=np.int32)


class _Shapes:
    """Paddles and markers of one geometry, drawn once per orientation and kept (per process)."""

    def __init__(self, L: int, t: float, m: int, A: int, marker_radius: float, continuity: float):
        self.L, self.m, self.A, self.continuity = L, m, A, continuity
        self.h = L + math.ceil(t) + m  # half side of a paddle's canvas (output pixels)
        self.width = round(t * A)
        self.dilate = _disc(m * A)
        self.mh = math.ceil(marker_radius) + 1  # half side of the marker's canvas
        n = 2 * self.mh * A + 1
        c = self.mh * A
        yy, xx = np.mgrid[:n, :n]
        self.marker = _down((yy - c) ** 2 + (xx - c) ** 2 <= (marker_radius * A) ** 2, 2 * self.mh + 1) / _FULL
        self._paddles: dict[float, tuple] = {}
        self.circle = _circle(L + m)  # the candidates of an extension around its pivot
        self.margin_disc = _disc(m)
        self._turn: dict[float, np.ndarray] = {}
        self._gather: dict[int, np.ndarray] = {}

    def turn(self, theta: float) -> np.ndarray:
        """f64(C): ``max(cos(min(|Δ|·continuity, π/2)), 0)²`` of each candidate, Δ its direction
        minus ``theta`` wrapped to [-π, π)."""
        got = self._turn.get(theta)
        if got is None:
            delta = np.abs((self.circle[2] - theta + np.pi) % (2 * np.pi) - np.pi)
            got = self._turn[theta] = np.maximum(np.cos(np.minimum(delta * self.continuity, np.pi / 2)), 0) ** 2
        return got

    def gather(self, width: int) -> np.ndarray:
        """i64(C D): flat offsets, in an array ``width`` wide, of the margin disc around each candidate."""
        got = self._gather.get(width)
        if got is None:
            dd = np.argwhere(self.margin_disc) - self.m
            got = self._gather[width] = ((self.circle[0] * width + self.circle[1])[:, None]
                                         + (dd[:, 0] * width + dd[:, 1])[None, :])
        return got

    def paddle(self, theta: float) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(intensity f64 (K K) in [0, 1], mask i32 (K K) in 0..255, fit entries), K = 2h + 1,
        centred on the paddle's start point; fit entries ``(dy, dx, v)`` list the mask pixels
        with v >= 459 - 255, the only ones that can break a fit."""
        got = self._paddles.get(theta)
        if got is None:
            A, n = self.A, 2 * self.h * self.A + 1
            c = self.h * A
            im = Image.new("L", (n, n), 0)
            y1, x1 = _translate(c, c, theta, self.L * A)
            ImageDraw.Draw(im).line([(c, c), (x1, y1)], fill=255, width=self.width)
            line = np.asarray(im) > 0
            img = _down(line, 2 * self.h + 1) / _FULL
            mask = _down(ndimage.binary_dilation(line, self.dilate), 2 * self.h + 1)
            dy, dx = np.nonzero(mask >= _FIT - _FULL)
            got = (img, mask, (dy - self.h, dx - self.h, mask[dy, dx]))
            self._paddles[theta] = got
        return got


_SHAPES: dict[tuple, _Shapes] = {}


def _shapes(p: PathfinderParams, m: int) -> _Shapes:
    key = (p.paddle_length, p.paddle_thickness, m, p.antialias_scale, p.marker_radius, p.continuity)
    if key not in _SHAPES:
        _SHAPES[key] = _Shapes(*key)
    return _SHAPES[key]


# ---------------------------------------------------------------- one image


class _Canvas:
    """Image (f64) and occupancy mask (i32, 0..255) padded by P on each side; outside = occupied."""

    def __init__(self, p: PathfinderParams, sh: _Shapes):
        self.S, self.P = p.window_size, max(sh.h, sh.mh) + 1
        S, P = self.S, self.P
        self.mask = np.full((S + 2 * P, S + 2 * P), _FULL, dtype=np.int32)
        self.mask[P + p.padding : P + S - p.padding, P + p.padding : P + S - p.padding] = 0
        self.image = np.zeros((S + 2 * P, S + 2 * P))
        self.version = 0  # bumped whenever the mask changes: keys the caches of free tails

    def inside(self, q: tuple[int, int]) -> bool:
        return 0 <= q[0] < self.S and 0 <= q[1] < self.S

    def window(self, arr: np.ndarray, q: tuple[int, int], h: int) -> np.ndarray:
        y, x = q[0] + self.P, q[1] + self.P
        return arr[y - h : y + h + 1, x - h : x + h + 1]

    def fits(self, mask: np.ndarray, q: tuple[int, int], pmask: np.ndarray, h: int) -> bool:
        return int((self.window(mask, q, h) + pmask).max()) < _FIT

    def bordered(self, mask: np.ndarray, width: int) -> np.ndarray:
        """``mask`` with its outer ``width`` image pixels marked occupied."""
        out = mask.copy()
        S, P = self.S, self.P
        inner = out[P + width : P + S - width, P + width : P + S - width].copy()
        out[P : P + S, P : P + S] = _FULL
        out[P + width : P + S - width, P + width : P + S - width] = inner
        return out

    def free_tails(self, mask: np.ndarray, entries: tuple) -> np.ndarray:
        """Flat indices of the image pixels where a paddle with fit entries ``entries`` fits.

        spec: "free after dilating by the paddle's own mask shape", read as the 1.8 fit rule
        at every tail: blocked where ``mask[tail + d] >= 459 - v`` for an entry (d, v)."""
        S, P = self.S, self.P
        blocked = np.zeros((S, S), dtype=bool)
        for dy, dx, v in zip(*entries):
            blocked |= mask[P + dy : P + dy + S, P + dx : P + dx + S] >= _FIT - v
        return np.flatnonzero(~blocked)


class _Snake:
    """A snake being grown: its paddles ``(y, x, θ, contrast)`` and the state of its tip."""

    def __init__(self, tail, theta, contrast, ends):
        self.paddles = [(tail[0], tail[1], theta, contrast)]
        self.head, self.pivot = ends
        self.theta = theta  # the direction of growth


class _Generator:
    def __init__(self, rng: np.random.Generator, p: PathfinderParams):
        self.rng, self.p = rng, p

    def start(self, m: int):
        self.m = m
        self.sh = _shapes(self.p, m)
        self.cv = _Canvas(self.p, self.sh)
        self.width = self.cv.S + 2 * self.cv.P  # of the padded arrays
        self.gather = self.sh.gather(self.width)
        self._free_cache: dict = {}

    # ----- shared steps
    def _contrast(self, snake_contrast: float) -> float:
        pc = self.p.paddle_contrast_list
        return pc[int(self.rng.integers(len(pc)))] * snake_contrast

    def _angle(self) -> float:
        return math.radians(int(self.rng.integers(-180, 180)))

    def _seed_ok(self, tail, theta) -> tuple | None:
        L, m = self.p.paddle_length, self.m
        head = _translate(*tail, theta, L)
        pivot = _translate(*head, _flip(theta), L + m)
        return (head, pivot) if self.cv.inside(head) and self.cv.inside(pivot) else None

    def seed(self, mask: np.ndarray, border: int, key) -> tuple | None:
        """A first paddle at a tail drawn uniformly where it fits in ``mask`` with a border of
        ``border`` px: (tail, θ, (head, pivot)), or None after max_paddle_retrial + 1 tries."""
        for _ in range(self.p.max_paddle_retrial + 1):
            deg = int(self.rng.integers(-180, 180))
            ck = (key, border, deg)
            free = self._free_cache.get(ck)
            if free is None:
                if (key, border) not in self._free_cache:
                    self._free_cache[(key, border)] = self.cv.bordered(mask, border)
                free = self.cv.free_tails(self._free_cache[(key, border)], self.sh.paddle(math.radians(deg))[2])
                self._free_cache[ck] = free
            if free.size == 0:
                continue
            idx = int(free[self.rng.integers(free.size)])
            tail, theta = (idx // self.cv.S, idx % self.cv.S), math.radians(deg)
            ends = self._seed_ok(tail, theta)
            if ends is not None:
                return tail, theta, ends
        return None

    def extend(self, snake: _Snake, mask: np.ndarray) -> tuple | None:
        """Draw the next paddle of ``snake`` against ``mask``: (head, θ) or None on failure."""
        p, cv = self.p, self.cv
        L, m = p.paddle_length, self.m
        cy, cx = _translate(*snake.pivot, snake.theta, L + 2 * m)
        dy, dx, th = self.sh.circle
        turn, gather = self.sh.turn(snake.theta), self.gather
        R = L + m
        if not (R <= cy < cv.S - R and R <= cx < cv.S - R):  # some candidates fall outside the image
            ok = (cy + dy >= 0) & (cy + dy < cv.S) & (cx + dx >= 0) & (cx + dx < cv.S)
            dy, dx, th, turn, gather = dy[ok], dx[ok], th[ok], turn[ok], gather[ok]
            if dy.size == 0:
                return None
        # the mask dilated by a disc of radius m, read at the candidates: (C, D) -> (C,)
        dil = mask.ravel().take(gather + ((cy + cv.P) * self.width + cx + cv.P)).max(axis=1)
        cum = np.cumsum((_FULL - dil) * turn) / _FULL
        if cum[-1] < 1e-4:
            return None
        for _ in range(p.max_paddle_retrial + 1):
            i = min(int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right")), cum.size - 1)
            head, theta = (cy + int(dy[i]), cx + int(dx[i])), float(th[i])
            if cv.fits(mask, head, self.sh.paddle(_flip(theta))[1], self.sh.h):
                return head, theta
        return None

    def accept(self, snake: _Snake, head, theta, contrast, mask: np.ndarray):
        """Append the paddle drawn back from ``head``; the previous paddle joins ``mask``."""
        self.stamp(mask, snake.paddles[-1])
        snake.paddles.append((head[0], head[1], _flip(theta), contrast))
        cy, cx = _translate(*snake.pivot, snake.theta, self.p.paddle_length + 2 * self.m)
        snake.pivot, snake.theta, snake.head = (cy, cx), theta, head

    def stamp(self, arr: np.ndarray, paddle, image: bool = False):
        y, x, theta, contrast = paddle
        img, pmask, _ = self.sh.paddle(theta)
        win = self.cv.window(arr, (y, x), self.sh.h)
        np.maximum(win, img * contrast if image else pmask, out=win)

    # ----- the image
    def targets(self) -> list[_Snake] | None:
        p, cv = self.p, self.cv
        both = p.snake_contrast_list * 2  # two draws without replacement from the list, twice over
        i, j = self.rng.choice(len(both), size=2, replace=False)
        contrasts = (both[i], both[j])
        mask = cv.mask.copy()
        got = self.seed(mask, 2 * p.seed_distance, key="targets")
        if got is None:
            return None
        tail_a, theta_a, ends_a = got
        a = _Snake(tail_a, theta_a, self._contrast(contrasts[0]), ends_a)
        for _ in range(p.max_paddle_retrial + 1):
            phi = math.radians(int(self.rng.integers(0, 360)))
            tail_b = (math.floor(tail_a[0] + p.seed_distance * math.sin(phi) + 0.5),
                      math.floor(tail_a[1] + p.seed_distance * math.cos(phi) + 0.5))
            theta_b = self._angle()
            ends_b = self._seed_ok(tail_b, theta_b) if cv.inside(tail_b) else None
            if ends_b is None:
                continue
            both = mask.copy()  # spec: B's first paddle must fit beside A's
            self.stamp(both, a.paddles[0])
            if cv.fits(both, tail_b, self.sh.paddle(theta_b)[1], self.sh.h):
                b = _Snake(tail_b, theta_b, self._contrast(contrasts[1]), ends_b)
                break
        else:
            return None
        snakes = [a, b]
        for _ in range(p.contour_length - 1):
            for s, snake in enumerate(snakes):
                other = mask.copy()  # spec: also keep clear of the other snake's newest paddle
                self.stamp(other, snakes[1 - s].paddles[-1])
                got = self.extend(snake, other)
                if got is None:
                    return None
                self.accept(snake, *got, self._contrast(contrasts[s]), mask)
        for snake in snakes:
            self.stamp(mask, snake.paddles[-1])
        cv.mask = mask
        cv.version += 1
        return snakes

    def distractor(self, length: int) -> bool:
        p, cv = self.p, self.cv
        # spec: a distractor snake draws one snake contrast, each paddle a paddle contrast
        contrast = p.snake_contrast_list[int(self.rng.integers(len(p.snake_contrast_list)))]
        for _ in range(p.max_distractor_contour_retrial + 1):
            got = self.seed(cv.mask, 1, key=("mask", cv.version))
            if got is None:
                continue
            tail, theta, ends = got
            snake = _Snake(tail, theta, self._contrast(contrast), ends)
            work = cv.mask.copy() if length > 1 else cv.mask
            for _ in range(length - 1):
                got = self.extend(snake, work)
                if got is None:
                    break
                self.accept(snake, *got, self._contrast(contrast), work)
            else:
                self.stamp(work, snake.paddles[-1])
                cv.mask = work
                cv.version += 1
                for paddle in snake.paddles:
                    self.stamp(cv.image, paddle, image=True)
                return True
        return False

    def availability(self) -> float:
        """Fraction of image pixels whose margin-dilated mask is below 0.5 (spec: "free")."""
        S, P = self.cv.S, self.cv.P
        inner = self.cv.mask[P : P + S, P : P + S]
        return float((ndimage.maximum_filter(inner, footprint=self.sh.margin_disc, mode="nearest") < _FREE).mean())


def _circle(R: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate offsets on the circle of radius R, every 360/(2πR) degrees, floored to the grid
    and deduplicated in order: (dy i64(C), dx i64(C), direction f64(C))."""
    deg = np.arange(0.0, 360.0, 360.0 / (2 * math.pi * R))
    dy = np.floor(R * np.sin(np.radians(deg))).astype(np.int64)
    dx = np.floor(R * np.cos(np.radians(deg))).astype(np.int64)
    _, first = np.unique(np.stack([dy, dx], 1), axis=0, return_index=True)
    first = np.sort(first)
    dy, dx = dy[first], dx[first]
    return dy, dx, np.arctan2(dy, dx).astype(np.float64)


_MAX_RESTARTS = 10_000


def generate_image(rng: np.random.Generator, params: PathfinderParams, label: int) -> tuple[np.ndarray, dict]:
    """One image ``u8(S S)`` with ``label`` (1: the markers end the same snake), and debug info.

    Info: ``o`` (the snake whose origin is marked), ``margin``, ``origin_tips`` and
    ``terminal_tips`` ``[(y, x)] * 2`` (snakes A, B), ``marked`` ``[(y, x)] * 2`` (origin tip of
    o, then the other marker), ``target_paddles`` ``[[(y, x, θ)] * contour_length] * 2``: paddle
    k of a snake is the segment from (y, x) to ``(ceil(y + L sin θ), ceil(x + L cos θ))``; the
    first runs outward from the origin tip, the others are drawn back from their head, so a
    snake's path is ``p0.start, p0.end, p1.end, p1.start, p2.end, p2.start, ...``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not isinstance(params, PathfinderParams):
        raise TypeError(f"params must be a PathfinderParams, got {type(params).__name__}")
    if label not in (0, 1) or isinstance(label, bool):
        raise ValueError(f"label must be 0 or 1, got {label!r}")
    p = params
    g = _Generator(rng, p)
    snakes = None
    for restart in range(_MAX_RESTARTS):  # spec: after max_target_contour_retrial, a new margin
        g.start(int(rng.choice(p.paddle_margin_list)))
        for _ in range(p.max_target_contour_retrial + 1):
            snakes = g.targets()
            if snakes is not None:
                break
        if snakes is not None:
            break
    if snakes is None:  # pragma: no cover - the presets succeed within a few attempts
        raise RuntimeError(f"could not place the target snakes in {_MAX_RESTARTS} restarts: {p}")
    cv = g.cv
    for snake in snakes:
        for paddle in snake.paddles:
            g.stamp(cv.image, paddle, image=True)
    count = 0
    for _ in range(p.num_distractor_snakes):
        if g.availability() < p.stop_with_availability:
            break
        count += g.distractor(p.distractor_length)
    if p.use_single_paddles:
        n_single = total_num_paddles(g.m) - 2 * p.contour_length - p.num_distractor_snakes * p.distractor_length
        for _ in range(max(n_single, 0)):
            if g.availability() < p.stop_with_availability:
                break
            g.distractor(1)
    o = int(rng.integers(2))
    origins = [(s.paddles[0][0], s.paddles[0][1]) for s in snakes]
    terminals = [s.head for s in snakes]
    marked = [origins[o], terminals[o if label == 1 else 1 - o]]
    for q in marked:
        win = cv.window(cv.image, q, g.sh.mh)
        np.maximum(win, g.sh.marker, out=win)
    img = cv.image[cv.P : cv.P + cv.S, cv.P : cv.P + cv.S]
    lo, hi = img.min(), img.max()
    out = np.floor((img - lo) * (255.0 / (hi - lo)) + 0.5).clip(0, 255).astype(np.uint8)  # imsave's bytescale
    info = {"o": o, "label": int(label), "margin": g.m, "origin_tips": origins, "terminal_tips": terminals,
            "marked": marked, "target_paddles": [[(y, x, th) for y, x, th, _ in s.paddles] for s in snakes],
            "restarts": restart}
    return out, info


# ---------------------------------------------------------------- sets


def _image_rng(seed: int, i: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))


def set_image(seed: int, i: int, params: PathfinderParams) -> tuple[np.ndarray, int, dict]:
    """Image ``i`` of the set ``seed``: ``(u8(S S), label, info)`` (``info`` as :func:`generate_image`
    gives it); what :func:`generate_pathfinder` puts at index ``i``."""
    rng = _image_rng(seed, i)
    label = int(rng.integers(2))
    img, info = generate_image(rng, params, label)
    return img, label, info


def _generate_range(seed: int, params: PathfinderParams, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    S = params.window_size
    x = np.empty((stop - start, S, S), dtype=np.uint8)
    y = np.empty(stop - start, dtype=np.uint8)
    for j, i in enumerate(range(start, stop)):
        x[j], y[j], _ = set_image(seed, i, params)
    return x, y


def generate_pathfinder(n: int, seed: int = 0, params: PathfinderParams | None = None, *, start: int = 0,
                        workers: int = 1, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start .. start+n-1`` of the set ``seed``: ``(u8(n S S), u8(n))`` (images, labels).

    Image i and its label are a pure function of ``(seed, i)``, so any split of the range (and
    ``workers`` > 1, separate processes started with ``spawn``) gives the same arrays.
    """
    for name, v, lo in (("n", n, 1), ("seed", seed, 0), ("start", start, 0), ("workers", workers, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    params = PRESETS[32] if params is None else params
    if not isinstance(params, PathfinderParams):
        raise TypeError(f"params must be a PathfinderParams, got {type(params).__name__}")
    n, seed, start = int(n), int(seed), int(start)
    chunk = max(1, min(256, -(-n // (int(workers) * 8))))
    bounds = [(a, min(a + chunk, start + n)) for a in range(start, start + n, chunk)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="img", desc=f"pathfinder{params.window_size}", disable=None)  # None: not into a log file
    parts = []
    try:
        if workers == 1:
            for a, b in bounds:
                parts.append(_generate_range(seed, params, a, b))
                if bar is not None:
                    bar.update(b - a)
        else:
            ctx = multiprocessing.get_context("spawn")
            try:
                with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as pool:
                    futures = [pool.submit(_generate_range, seed, params, a, b) for a, b in bounds]
                    for (a, b), fut in zip(bounds, futures):
                        parts.append(fut.result())
                        if bar is not None:
                            bar.update(b - a)
            except BrokenProcessPool as e:
                # the usual cause: a script without the main guard; each spawned worker re-runs it
                # and fails when it tries to start processes of its own
                raise RuntimeError(
                    f"a Pathfinder worker process died (workers={workers}). Workers start with 'spawn', "
                    "which imports the calling script again: a script that generates with workers > 1 "
                    "must do it under `if __name__ == \"__main__\":`. Otherwise the worker ran out of "
                    "memory or was killed; workers=1 generates in this process.") from e
    finally:
        if bar is not None:
            bar.close()
    return np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts])


@dataclass
class PathfinderDataConfig:
    """The data section of a Pathfinder / Path-X task: one generated set, split by order."""

    resolution: int = 32  # 32 (Pathfinder), 64 or 128 (Path-X): the LRA preset
    contour_length: int = 14  # 6 easy, 9 intermediate, 14 hard (LRA's)
    n_train: int = 160000  # the first n_train images
    n_val: int = 20000  # the next n_val
    n_test: int = 20000  # the last n_test
    seed: int = 0  # the set: image i is a function of (seed, i)
    workers: int = 1  # processes generating a missing set (does not change the result)
    cache_dir: str | None = None  # cache root (default $HIPPOS_CACHE, else ~/.cache/hippos)
    augment: str = "none"  # training images: "dihedral" draws each in a random flip / quarter turn (the label
    # "markers connected" is the same in all 8); "none" as LRA. Not part of the set (the cache key)


def load_pathfinder(cfg: PathfinderDataConfig, log: Callable[[str], None] | None = None,
                    progress: bool | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train" | "val" | "test": (images u8(n S S), labels i64(n))}``, generated once and
    cached (``hippos.data.gen_cache``); ``progress`` (default: when ``log`` is given) shows a
    tqdm bar while generating."""
    counts = {}
    for name in ("n_train", "n_val", "n_test"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        counts[name] = int(v)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, (int, np.integer)) or cfg.seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    total = sum(counts.values())
    if total == 0:
        raise ValueError("n_train + n_val + n_test must be > 0")
    params = preset(cfg.resolution, cfg.contour_length)
    key = {**params.to_dict(), **counts, "seed": int(cfg.seed), "version": 1}
    show = (log is not None) if progress is None else progress

    def build() -> dict[str, np.ndarray]:
        x, y = generate_pathfinder(total, int(cfg.seed), params, workers=cfg.workers, progress=show)
        return {"images": x, "labels": y}

    arrays = cached_arrays("pathfinder", key, build, cache_dir=cfg.cache_dir, log=log)
    x, y = arrays["images"], arrays["labels"].astype(np.int64)
    a, b = counts["n_train"], counts["n_train"] + counts["n_val"]
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}

