"""Classical lesion segmenter: a pixel classifier on filter features, then a candidate picker.

Stage 1 (pixels). Each grey image (S, S) is reduced to a working grid of ``S / stride`` and
described per pixel by intensity/texture/position features: Gaussian-smoothed intensity at
several scales (z-scored per image), darkness rank within the image, local standard
deviation, centre-surround contrast (difference of Gaussians), gradient magnitude, Hessian
blob response, the intensity below and above (posterior shadowing/enhancement), normalised
x/y and distance from the centre. A gradient-boosted classifier (HistGradientBoosting) is
trained on a class-balanced sample of pixels and gives a lesion-probability map.

Stage 2 (regions). Candidate regions are the connected components of the smoothed map above
several thresholds (holes filled). Each is described by its size, position, shape, mean/max
probability and intensity contrast with its surroundings, and a second gradient-boosted
model, trained on out-of-fold maps of the training images, predicts its Dice with the
truth. The best-scoring candidate is kept, upsampled to (S, S), edge-smoothed, opened,
reduced to its largest component and hole-filled.

Stage 3 (presence). A small classifier on image-level evidence (the best candidates' scores,
map statistics) gives P(lesion); below ``empty_score`` — the value of ``cfg.empty_scores``
maximising the out-of-fold mean Dice of ALL train images, an empty prediction on an empty
truth counting 1 — the prediction is "no lesion", which is how normal images come out empty.

Every model above stage 1 is trained on out-of-fold outputs of the stage below (stacking),
so ``fit`` returns honest out-of-fold masks of the train images as a by-product.

Cross-validation over every image (a split without a test part, ``split.test_size: 0``,
e.g. mini-MIAS): the train_classical_seg stage fits one ``ClassicalSegmenter`` per outer
fold k on the other folds (with its own inner CV over them, exactly as above) and predicts
fold k; the pooled masks cover every image, each from a segmenter that never saw it, and
``OuterFoldSegmenters`` holds the K fitted segmenters. The features stage's hand_predicted
features of every image then come from a segmenter that never saw that image. A
second-order effect remains: the classifier of outer fold k (train_classical) is trained on
the hand_predicted features of the other folds' images, whose masks came from segmenters
that did see fold k's images and masks; fold k's test features thus depend slightly on a
segmenter trained with them in it, through the training features of its classifier only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# Pixel features
# ---------------------------------------------------------------------------------------------
def downsample(img: np.ndarray, stride: int) -> np.ndarray:
    """(S, S) → (S/stride, S/stride) by block averaging (float32)."""
    s = img.shape[0]
    if s % stride or img.shape[1] % stride:
        raise ValueError(f"image size {img.shape} is not a multiple of stride {stride}")
    x = img.astype(np.float32)
    if stride == 1:
        return x
    n = s // stride
    return x.reshape(n, stride, img.shape[1] // stride, stride).mean(axis=(1, 3))


def _rank(a: np.ndarray) -> np.ndarray:
    """Percentile rank of each value within the array, in [0, 1]."""
    flat = a.ravel()
    r = np.empty(flat.size, dtype=np.float32)
    r[np.argsort(flat, kind="stable")] = np.arange(flat.size, dtype=np.float32)
    return (r / max(flat.size - 1, 1)).reshape(a.shape)


def _shift(a: np.ndarray, dy: int) -> np.ndarray:
    """a shifted so that out[y] = a[y + dy] (edge-replicated)."""
    idx = np.clip(np.arange(a.shape[0]) + dy, 0, a.shape[0] - 1)
    return a[idx]


FEATURE_NAMES: list[str] = []  # filled by pixel_features on first call (for reports)


def pixel_features(img: np.ndarray, stride: int = 2) -> np.ndarray:
    """(S, S) uint8 grey → (n, n, F) float32 features on the working grid (n = S / stride).

    Scales are fractions of the grid size, so the features mean the same at any S.
    """
    x = downsample(img, stride) / 255.0
    n = x.shape[0]
    z = (x - x.mean()) / (x.std() + EPS)
    u = n / 64.0  # one unit = one pixel of a 64-pixel grid
    feats: dict[str, np.ndarray] = {"z": z}
    g = {}
    for s in (1, 2, 4, 8):
        g[s] = ndi.gaussian_filter(z, s * u, mode="reflect")
        feats[f"g{s}"] = g[s]
        feats[f"rank{s}"] = _rank(g[s])
    g[16] = ndi.gaussian_filter(z, 16 * u, mode="reflect")
    feats["g16"] = g[16]
    for s in (1, 2, 4):
        m2 = ndi.gaussian_filter(z * z, s * u, mode="reflect")
        feats[f"std{s}"] = np.sqrt(np.maximum(m2 - g[s] ** 2, 0))
    feats["dog1_4"] = g[1] - g[4]
    feats["dog2_8"] = g[2] - g[8]
    feats["dog4_16"] = g[4] - g[16]
    for s in (1, 2):
        feats[f"grad{s}"] = ndi.gaussian_gradient_magnitude(z, s * u, mode="reflect")
    for s in (2, 4, 8):
        # Laplacian of Gaussian (scale-normalised): positive at the centre of dark blobs.
        feats[f"log{s}"] = (s * u) ** 2 * ndi.gaussian_laplace(z, s * u, mode="reflect")
    d = max(int(round(8 * u)), 1)
    feats["below"] = _shift(g[4], 2 * d) - g[4]  # posterior shadow (<0) / enhancement (>0)
    feats["above"] = _shift(g[4], -2 * d) - g[4]
    feats["below_far"] = _shift(g[4], 4 * d) - g[4]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / max(n - 1, 1)
    feats["y"] = yy
    feats["x"] = xx
    feats["r"] = np.hypot(yy - 0.5, xx - 0.5)
    feats["ax"] = np.abs(xx - 0.5)
    feats["img_mean"] = np.full_like(z, x.mean())
    feats["img_std"] = np.full_like(z, x.std())
    if not FEATURE_NAMES:
        FEATURE_NAMES.extend(feats)
    return np.stack(list(feats.values()), axis=-1).astype(np.float32)


def features_of(images: np.ndarray, stride: int = 2) -> np.ndarray:
    """(N, S, S) → (N, n, n, F)."""
    return np.stack([pixel_features(im, stride) for im in images])


def mask_coverage(masks: np.ndarray, stride: int) -> np.ndarray:
    """(N, S, S) {0,1} → (N, n, n) lesion fraction of each working-grid pixel."""
    return np.stack([downsample(m.astype(np.float32), stride) for m in masks])


# ---------------------------------------------------------------------------------------------
# Stage 1: pixel classifier
# ---------------------------------------------------------------------------------------------
def sample_pixels(feats: np.ndarray, cover: np.ndarray, per_image: int, seed: int):
    """Class-balanced pixel sample: up to per_image/2 lesion and per_image/2 background pixels
    per image (normal images give background only). Returns X (m, F), y (m,)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    half = per_image // 2
    for f, c in zip(feats, cover):
        f = f.reshape(-1, f.shape[-1])
        c = c.ravel()
        pos, neg = np.flatnonzero(c >= 0.5), np.flatnonzero(c < 0.5)
        take = []
        if pos.size:
            take.append(rng.choice(pos, min(half, pos.size), replace=False))
        if neg.size:
            take.append(rng.choice(neg, min(half, neg.size), replace=False))
        idx = np.sort(np.concatenate(take))
        X.append(f[idx])
        y.append((c[idx] >= 0.5).astype(np.int8))
    return np.concatenate(X), np.concatenate(y)


def fit_pixel_model(feats, cover, per_image: int, params: dict, seed: int):
    X, y = sample_pixels(feats, cover, per_image, seed)
    if len(np.unique(y)) < 2:
        raise ValueError("segmenter: the training images have no lesion pixels")
    clf = HistGradientBoostingClassifier(early_stopping=False, random_state=seed, **params)
    return clf.fit(X, y)


def prob_maps(model, feats: np.ndarray) -> np.ndarray:
    """(N, n, n, F) → (N, n, n) lesion probability on the working grid."""
    n_img, n = feats.shape[0], feats.shape[1]
    if n_img == 0:
        return np.zeros((0, n, n), np.float32)
    p = model.predict_proba(feats.reshape(-1, feats.shape[-1]))[:, 1]
    return p.reshape(n_img, n, n).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Stage 2: candidate regions
# ---------------------------------------------------------------------------------------------
@dataclass
class Candidates:
    """Candidate regions of one image on the working grid."""

    masks: list[np.ndarray] = field(default_factory=list)  # bool (n, n)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def _region_features(region: np.ndarray, p: np.ndarray, z: np.ndarray, t: float,
                     rank: int, n_comp: int, mass_total: float) -> list[float]:
    n = region.shape[0]
    area = region.sum()
    ys, xs = np.nonzero(region)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    ring = ndi.binary_dilation(region, iterations=max(1, n // 32)) & ~region
    inside_p = p[region]
    inside_z = z[region]
    ring_z = z[ring] if ring.any() else inside_z
    mass = float(inside_p.sum())
    eroded = ndi.binary_erosion(region)
    perim = float(area - eroded.sum())
    return [
        t, rank, n_comp, area / n / n, mass / (mass_total + EPS),
        float(inside_p.mean()), float(inside_p.max()), float(np.percentile(inside_p, 90)),
        float(ys.mean() / n), float(xs.mean() / n), h / n, w / n, area / (h * w),
        perim / (np.sqrt(area) + EPS),
        float(ys.min() == 0 or xs.min() == 0 or ys.max() == n - 1 or xs.max() == n - 1),
        float(inside_z.mean()), float(inside_z.std()), float(ring_z.mean() - inside_z.mean()),
        float(p[ring].mean()) if ring.any() else 0.0,
        float(p.max()), float((p >= 0.5).mean()),
    ]


N_REGION_FEATURES = 21


def candidates(p: np.ndarray, z: np.ndarray, thresholds, smooth: float, max_per_threshold: int,
               min_pixels: int) -> Candidates:
    """Connected components (holes filled) of the smoothed map above each threshold.

    Per threshold only the ``max_per_threshold`` components of largest probability mass
    are kept (ties: first in label order).
    """
    ps = ndi.gaussian_filter(p, smooth) if smooth > 0 else p
    out = Candidates()
    rows = []
    for t in thresholds:
        lab, k = ndi.label(ps >= t)
        if k == 0:
            continue
        idx = np.arange(1, k + 1)
        mass = ndi.sum(ps, lab, idx)
        sizes = ndi.sum(np.ones_like(ps), lab, idx)
        order = [i for i in np.argsort(-mass, kind="stable") if sizes[i] >= min_pixels]
        mass_total = float(mass.sum())
        for r, i in enumerate(order[:max_per_threshold]):
            region = ndi.binary_fill_holes(lab == idx[i])
            out.masks.append(region)
            rows.append(_region_features(region, ps, z, t, r, k, mass_total))
    out.features = (np.asarray(rows, np.float32) if rows
                    else np.zeros((0, N_REGION_FEATURES), np.float32))
    return out


def image_features(p: np.ndarray, cand: Candidates, scores: np.ndarray,
                   z: np.ndarray) -> np.ndarray:
    """Whole-image evidence of a lesion: the best candidate scores and map statistics."""
    top = np.sort(scores)[::-1] if len(scores) else np.zeros(0)
    top3 = np.concatenate([top[:3], np.full(max(0, 3 - len(top)), -1.0)])
    best = cand.features[int(np.argmax(scores))] if len(scores) else \
        np.full(N_REGION_FEATURES, -1.0, np.float32)
    q = np.percentile(p, [50, 90, 99])
    return np.concatenate([
        top3, [len(scores), p.max(), p.mean(), (p >= 0.5).mean(), (p >= 0.7).mean(), *q,
               z.std(), np.percentile(z, 5), np.percentile(z, 95)], best,
    ]).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A| + |B|); 1.0 when both are empty."""
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * (a & b).sum() / s)


def upsample_mask(region: np.ndarray, stride: int, smooth_px: float) -> np.ndarray:
    """Working-grid region → (S, S) bool, with smooth edges (Gaussian of the 0/1 mask, >= .5)."""
    if stride == 1:
        m = region.astype(np.float32)
    else:
        m = ndi.zoom(region.astype(np.float32), stride, order=1, mode="nearest", grid_mode=True)
    if smooth_px > 0:
        m = ndi.gaussian_filter(m, smooth_px)
    return m >= 0.5


def postprocess(region: np.ndarray, stride: int, smooth_px: float, open_px: int) -> np.ndarray:
    """Upsample, smooth, open, keep the largest component, fill holes → (S, S) uint8 {0,1}."""
    m = upsample_mask(region, stride, smooth_px)
    if open_px > 0 and m.any():
        st = ndi.generate_binary_structure(2, 1)
        opened = ndi.binary_opening(m, st, iterations=open_px)
        m = opened if opened.any() else m
    lab, k = ndi.label(m)
    if k > 1:
        sizes = ndi.sum(m, lab, np.arange(1, k + 1))
        m = lab == 1 + int(np.argmax(sizes))
    return ndi.binary_fill_holes(m).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# The segmenter
# ---------------------------------------------------------------------------------------------
def _with_threads(fn, *args, **kwargs):
    """Run single-threaded: OpenMP spin-waits make HistGradientBoosting many times slower on a
    busy 2-core machine, and one thread keeps results independent of the machine."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        return fn(*args, **kwargs)


class ClassicalSegmenter:
    """fit(images, masks, folds) → out-of-fold masks + tuned "no lesion" rule; predict(images).

    ``cfg`` has the fields of busdx.config.TrainClassicalSegConfig (any object with them).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.pixel_model_ = None
        self.region_model_ = None
        self.presence_model_ = None
        self.empty_score_: float | None = None

    # -- pieces ---------------------------------------------------------------------------
    def _features(self, images: np.ndarray) -> np.ndarray:
        return features_of(images, self.cfg.stride)

    def _candidates(self, p: np.ndarray, f: np.ndarray) -> Candidates:
        n = p.shape[0]
        min_px = max(1, int(round(self.cfg.min_region_fraction * n * n)))
        return candidates(p, f[..., 0], self.cfg.thresholds, self.cfg.smooth,
                          self.cfg.max_per_threshold, min_px)

    def _final(self, region: np.ndarray) -> np.ndarray:
        return postprocess(region, self.cfg.stride, self.cfg.edge_smooth_px, self.cfg.open_px)

    def _fit_regions(self, cands: list[Candidates], targets: list[np.ndarray]):
        X = np.concatenate([c.features for c in cands])
        y = np.concatenate(targets)
        if len(y) == 0:
            return None
        reg = HistGradientBoostingRegressor(early_stopping=False, random_state=self.cfg.seed,
                                            **self.cfg.region_model)
        return reg.fit(X, y)

    @staticmethod
    def _scores(reg, cands: list[Candidates]) -> list[np.ndarray]:
        if reg is None:
            return [np.zeros(len(c.masks)) for c in cands]
        X = np.concatenate([c.features for c in cands]) if cands else np.zeros((0, 0))
        s = reg.predict(X) if len(X) else np.zeros(0)
        out, i = [], 0
        for c in cands:
            out.append(s[i:i + len(c.masks)])
            i += len(c.masks)
        return out

    def _fit_presence(self, X: np.ndarray, has: np.ndarray):
        if len(np.unique(has)) < 2:
            return None  # one kind of image only: nothing to learn, never predict empty
        clf = HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.05, max_leaf_nodes=7, early_stopping=False,
            class_weight="balanced", random_state=self.cfg.seed)
        return clf.fit(X, has.astype(int))

    @staticmethod
    def _presence(clf, X: np.ndarray) -> np.ndarray:
        if clf is None:
            return np.ones(len(X))
        return clf.predict_proba(X)[:, 1] if len(X) else np.zeros(0)

    def _choose(self, cand: Candidates, scores: np.ndarray, presence: float,
                empty_score: float) -> np.ndarray:
        size = self.cfg.size
        if not cand.masks or presence < empty_score:
            return np.zeros((size, size), np.uint8)
        j = int(np.argmax(scores))  # first best on ties
        return self._final(cand.masks[j])

    # -- API ------------------------------------------------------------------------------
    def fit(self, images: np.ndarray, masks: np.ndarray, folds: np.ndarray) -> dict:
        """Cross-validated fit on train images. Returns out-of-fold results:
        ``masks`` (N, S, S) uint8, ``dice`` (N,), ``empty_score``, ``tuning`` table."""
        return _with_threads(self._fit, images, masks, folds)

    def _fit(self, images, masks, folds) -> dict:
        cfg = self.cfg
        images, masks, folds = np.asarray(images), np.asarray(masks), np.asarray(folds, int)
        if images.shape[1:] != (cfg.size, cfg.size) or masks.shape != images.shape:
            raise ValueError(f"segmenter: images {images.shape} / masks {masks.shape} must be "
                             f"(N, {cfg.size}, {cfg.size})")
        if (folds < 0).any():
            raise ValueError("segmenter: folds < 0 (test rows) passed to fit")
        ks = np.unique(folds)
        if len(ks) < 2:
            raise ValueError("segmenter: need at least 2 folds")
        feats = self._features(images)
        cover = mask_coverage(masks, cfg.stride)
        # Stage 1, out of fold.
        maps = np.zeros(cover.shape, np.float32)
        for k in ks:
            tr, va = folds != k, folds == k
            m = fit_pixel_model(feats[tr], cover[tr], cfg.pixels_per_image, cfg.pixel_model,
                                cfg.seed)
            maps[va] = prob_maps(m, feats[va])
        cands = [self._candidates(p, f) for p, f in zip(maps, feats)]
        # Stage-2 target: Dice of each candidate with the truth on the working grid (cheap;
        # close to the Dice after upsampling).
        truth = cover >= 0.5
        targets = [np.array([dice(r, t) for r in c.masks]) for c, t in zip(cands, truth)]
        # Stage 2, out of fold (trained on out-of-fold maps of the other folds).
        scores: list[np.ndarray] = [np.zeros(0)] * len(cands)
        for k in ks:
            tr = np.flatnonzero(folds != k)
            va = np.flatnonzero(folds == k)
            reg = self._fit_regions([cands[i] for i in tr], [targets[i] for i in tr])
            for i, s in zip(va, self._scores(reg, [cands[i] for i in va])):
                scores[i] = s
        # Stage 3, out of fold: P(lesion in the image) from the best candidates' scores and
        # map statistics; "no lesion" when it is below the empty_score (of cfg.empty_scores)
        # maximising the mean Dice of all train images.
        has = masks.reshape(len(masks), -1).any(axis=1)
        imf = np.stack([image_features(p, c, s, f[..., 0])
                        for p, c, s, f in zip(maps, cands, scores, feats)])
        top = np.zeros(len(cands))
        for k in ks:
            tr, va = folds != k, folds == k
            clf = self._fit_presence(imf[tr], has[tr])
            top[va] = self._presence(clf, imf[va])
        best_idx = [int(np.argmax(s)) if len(s) else -1 for s in scores]
        top = np.where(np.array(best_idx) >= 0, top, -np.inf)
        top_dice = np.array([dice(self._final(cands[i].masks[j]), masks[i]) if j >= 0 else 0.0
                             for i, j in enumerate(best_idx)])
        tuning = []
        for e in cfg.empty_scores:
            keep = top >= e
            d = np.where(keep, top_dice, np.where(has, 0.0, 1.0))
            tuning.append({"empty_score": e, "dice_all": float(d.mean()),
                           "dice_lesion": float(d[has].mean()) if has.any() else None,
                           "normal_empty": float((~keep[~has]).mean()) if (~has).any() else None})
        best = max(range(len(tuning)), key=lambda i: (tuning[i]["dice_all"], -i))
        self.empty_score_ = float(cfg.empty_scores[best])
        oof = np.stack([self._choose(c, s, t, self.empty_score_)
                        for c, s, t in zip(cands, scores, top)])
        # Final models on all train images.
        self.pixel_model_ = fit_pixel_model(feats, cover, cfg.pixels_per_image,
                                            cfg.pixel_model, cfg.seed)
        self.region_model_ = self._fit_regions(cands, targets)
        self.presence_model_ = self._fit_presence(imf, has)
        d = np.array([dice(a, b) for a, b in zip(oof, masks)])
        return {"masks": oof, "dice": d, "empty_score": self.empty_score_, "tuning": tuning,
                "has_lesion": has}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S) uint8 grey → (N, S, S) uint8 {0, 1} masks (all zero: no lesion)."""
        if self.pixel_model_ is None:
            raise RuntimeError("ClassicalSegmenter: call fit first")
        return _with_threads(self._predict, np.asarray(images))

    def _predict(self, images: np.ndarray) -> np.ndarray:
        size = self.cfg.size
        if len(images) == 0:
            return np.zeros((0, size, size), np.uint8)
        if images.shape[1:] != (size, size):
            raise ValueError(f"segmenter: images must be (N, {size}, {size}), got {images.shape}")
        feats = self._features(images)
        maps = prob_maps(self.pixel_model_, feats)
        cands = [self._candidates(p, f) for p, f in zip(maps, feats)]
        scores = self._scores(self.region_model_, cands)
        imf = np.stack([image_features(p, c, s, f[..., 0])
                        for p, c, s, f in zip(maps, cands, scores, feats)])
        presence = self._presence(self.presence_model_, imf)
        return np.stack([self._choose(c, s, t, self.empty_score_)
                         for c, s, t in zip(cands, scores, presence)])


class OuterFoldSegmenters:
    """The segmenters of cross-validation over every image: ``models[i]`` was fitted on all
    folds but ``outer_folds[i]`` and predicted that fold's images.

    There is no segmenter fitted on all images. ``predict`` therefore needs ``ensemble=True``
    (pixel-wise vote of the fold segmenters, lesion where at least half say so: for NEW
    images only, since each training image was seen by all but one of them);
    ``predict_fold`` reproduces the out-of-fold masks.
    """

    def __init__(self, models: list[ClassicalSegmenter], outer_folds: list[int]):
        if len(models) != len(outer_folds):
            raise ValueError("OuterFoldSegmenters: one model per outer fold")
        self.models = list(models)
        self.outer_folds = [int(k) for k in outer_folds]
        self.cross_validation = True

    def predict_fold(self, k: int, images: np.ndarray) -> np.ndarray:
        """Masks of fold ``k``'s images by the segmenter that never saw fold k."""
        if int(k) not in self.outer_folds:
            raise ValueError(f"no outer fold {k}; folds {self.outer_folds}")
        return self.models[self.outer_folds.index(int(k))].predict(images)

    def predict(self, images: np.ndarray, ensemble: bool = False) -> np.ndarray:
        if not ensemble:
            raise ValueError(f"cross-validation segmenter: {len(self.models)} outer-fold "
                             "models and no single one; use predict_fold(k, images) for the "
                             "out-of-fold masks, or predict(images, ensemble=True) for a "
                             "majority vote on new images")
        votes = np.mean([m.predict(images).astype(np.float32) for m in self.models], axis=0)
        return (votes >= 0.5).astype(np.uint8)
