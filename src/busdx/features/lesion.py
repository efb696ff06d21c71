"""BI-RADS-style descriptors of a lesion mask on its grey FOV image (native pixels).

Which lesion: components (8-connected) smaller than ``min_pixels`` are specks and ignored;
every descriptor except ``shape_n_components`` and ``shape_area_frac_all`` is computed on the
**largest** remaining component with its holes filled ("the lesion"). Multi-lesion images
(a few BUSI benigns) are thus described by their main lesion; a predicted mask's stray blobs
do not distort the shape. Ties in size go to the lowest label (row-major first).

No lesion (normal image, empty or all-speck mask): ``has_lesion`` = 0 and every descriptor is
its documented neutral value 0 (``neutral_lesion_features``). Descriptors that need
surroundings that do not exist (no ring, no room below the lesion) are 0 too, with
``post_valid`` telling whether the posterior features were measurable.

Features (all scale-free unless noted; intensities as grey-level differences / 255):

``shape_*``
  area_frac (lesion / FOV area), area_frac_all (all kept components), n_components,
  perimeter_rel (Crofton perimeter / sqrt(FOV area)), circularity (4 pi A / P^2, clipped to
  1), solidity (A / convex-hull area; 1 - solidity is the convex-hull deficit), extent
  (A / bbox area), eccentricity (of the same-moments ellipse), axis_ratio (minor / major),
  orientation_deg (major axis vs horizontal: 0 parallel to the skin, 90 vertical;
  arbitrary for near-round lesions, so read it with eccentricity),
  taller_than_wide (bbox height / width, native pixels), depth (centroid row / FOV height),
  nrl_std (std / mean of the radial lengths centroid → contour, 0 for a disc),
  nrl_roughness (mean |r_i - r_i+1| / mean r over the contour resampled to 256 points),
  enc (perimeter / perimeter of the same-moments ellipse: 1 smooth oval, > 1 lobulated or
  spiculated).
``les_*`` / ``ring_*``
  grey-level statistics (busdx.features.intensity) of the lesion and of the ring of pixels
  outside it within ``ring_width`` x its equivalent radius (at least 3 px).
``echo_*``
  rel_ring ((lesion mean - ring mean) / 255: < 0 hypoechoic), rel_image (vs the whole FOV),
  ratio_ring ((lesion mean + 1) / (ring mean + 1)), heterogeneity
  ((lesion std + 1) / (ring std + 1)).
``edge_*``
  gradient (mean gradient-of-Gaussian magnitude, sigma ``edge_sigma``, on the 1-px ribbons
  either side of the boundary, / 255 per pixel), contrast ((outer band mean - inner band
  mean) / 255, bands ``edge_band_px`` wide).
``post_*``
  contrast ((mean of the band below the lesion - mean of the bands beside it at the same
  depth) / 255: < 0 posterior shadowing, > 0 enhancement), log_ratio
  (log((below + 1) / (beside + 1))), valid (1 when both bands exist). Bands: rows
  [bottom, bottom + ``posterior_depth`` x lesion height), below = the lesion's columns,
  beside = ``posterior_side`` x lesion width on each side.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.measure import find_contours, regionprops

from busdx.features.intensity import STATS, histogram, histogram_stats

N_CONTOUR = 256
EIGHT = np.ones((3, 3), dtype=bool)

SHAPE_KEYS = ("area_frac", "area_frac_all", "n_components", "perimeter_rel", "circularity",
              "solidity", "extent", "eccentricity", "axis_ratio", "orientation_deg",
              "taller_than_wide", "depth", "nrl_std", "nrl_roughness", "enc")
ECHO_KEYS = ("rel_ring", "rel_image", "ratio_ring", "heterogeneity")
EDGE_KEYS = ("gradient", "contrast")
POST_KEYS = ("contrast", "log_ratio", "valid")


def feature_names() -> list[str]:
    """Every key ``lesion_features`` returns, sorted."""
    names = ["has_lesion"]
    names += [f"shape_{k}" for k in SHAPE_KEYS] + [f"echo_{k}" for k in ECHO_KEYS]
    names += [f"edge_{k}" for k in EDGE_KEYS] + [f"post_{k}" for k in POST_KEYS]
    names += [f"{p}_{s}" for p in ("les", "ring") for s in STATS]
    return sorted(names)


def neutral_lesion_features() -> dict[str, float]:
    """The documented values for "no lesion": everything 0 (``has_lesion`` included)."""
    return {k: 0.0 for k in feature_names()}


def main_lesion(mask: np.ndarray, min_pixels: int) -> tuple[np.ndarray | None, int, int]:
    """(largest kept component with holes filled or None, number of kept components, pixels
    in all kept components)."""
    lab, n = ndi.label(np.asarray(mask) > 0, structure=EIGHT)
    if n == 0:
        return None, 0, 0
    sizes = np.bincount(lab.ravel())[1:]
    kept = sizes >= min_pixels
    if not kept.any():
        return None, 0, 0
    biggest = int(np.argmax(sizes)) + 1  # first maximum: lowest label
    sl = ndi.find_objects(lab, max_label=biggest)[biggest - 1]
    out = np.zeros(lab.shape, dtype=bool)
    # Filling within the bounding box is exact: a background region touching the box's edge
    # reaches the outside, so it is not a hole.
    out[sl] = ndi.binary_fill_holes(lab[sl] == biggest)
    return out, int(kept.sum()), int(sizes[kept].sum())


def _bbox(m: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _mean(image: np.ndarray, region: np.ndarray) -> float | None:
    n = int(region.sum())
    return float(image[region].mean(dtype=np.float64)) if n else None


def radial_lengths(lesion: np.ndarray, centroid: tuple[float, float], n: int = N_CONTOUR) -> np.ndarray:
    """Distances centroid → outer contour, contour resampled to ``n`` points equally spaced
    along its length."""
    contours = find_contours(np.pad(lesion, 1).astype(np.float32), 0.5)
    c = max(contours, key=len) - 1.0  # undo the padding
    seg = np.hypot(*np.diff(c, axis=0).T)
    s = np.concatenate(([0.0], np.cumsum(seg)))
    t = np.linspace(0.0, s[-1], n, endpoint=False)
    pts = np.stack([np.interp(t, s, c[:, 0]), np.interp(t, s, c[:, 1])], axis=1)
    return np.hypot(pts[:, 0] - centroid[0], pts[:, 1] - centroid[1])


def _ellipse_perimeter(a: float, b: float) -> float:
    """Ramanujan's second approximation (semi-axes a, b)."""
    if a + b <= 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def convex_area(lesion: np.ndarray) -> int:
    """Pixels inside the convex hull of the lesion's pixel centres (hull edges included)."""
    m = lesion.astype(np.uint8)
    hull = cv2.convexHull(cv2.findNonZero(m))
    canvas = np.zeros_like(m)
    cv2.fillConvexPoly(canvas, hull, 1)
    return int(np.count_nonzero(canvas | m))


def gradient_magnitude(image: np.ndarray, sigma: float) -> np.ndarray:
    """|grad| of the Gaussian-smoothed image (grey levels per pixel, central differences)."""
    blur = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REPLICATE)
    gy, gx = np.gradient(blur)
    return np.hypot(gx, gy)


def shape_descriptors(lesion: np.ndarray, fov_shape: tuple[int, int]) -> dict[str, float]:
    """Shape part of the ``shape_*`` features of one filled component (see module doc)."""
    h, w = fov_shape
    by0, by1, bx0, bx1 = _bbox(lesion)
    crop = lesion[by0:by1, bx0:bx1]  # everything below is translation-invariant or offset
    rp = regionprops(crop.astype(np.uint8))[0]
    area = float(rp.area)
    perim = float(rp.perimeter_crofton)
    if perim <= 0:
        perim = float(rp.perimeter)
    circ = min(1.0, 4 * math.pi * area / perim**2) if perim > 0 else 1.0
    y0, x0, y1, x1 = rp.bbox
    major, minor = float(rp.axis_major_length), float(rp.axis_minor_length)
    r = radial_lengths(crop, rp.centroid)
    rmean = float(r.mean())
    ell = _ellipse_perimeter(major / 2, minor / 2)
    return {
        "area_frac": area / (h * w),
        "perimeter_rel": perim / math.sqrt(h * w),
        "circularity": circ,
        "solidity": area / convex_area(crop),
        "extent": float(rp.extent),
        "eccentricity": float(rp.eccentricity),
        "axis_ratio": minor / major if major > 0 else 1.0,
        # skimage: angle between the row axis and the major axis, in [-pi/2, pi/2].
        "orientation_deg": 90.0 - abs(math.degrees(float(rp.orientation))),
        "taller_than_wide": (y1 - y0) / (x1 - x0),
        "depth": (by0 + float(rp.centroid[0])) / h,
        "nrl_std": float(r.std()) / rmean if rmean > 0 else 0.0,
        "nrl_roughness": float(np.abs(r - np.roll(r, 1)).mean()) / rmean if rmean > 0 else 0.0,
        "enc": perim / ell if ell > 0 else 1.0,
    }


def posterior_features(image: np.ndarray, lesion: np.ndarray, depth: float, side: float) -> dict[str, float]:
    """``post_*`` features (see module doc); zeros with ``valid`` 0 when a band is missing."""
    h, w = image.shape
    y0, y1, x0, x1 = _bbox(lesion)
    d = max(2, round(depth * (y1 - y0)))
    s = max(2, round(side * (x1 - x0)))
    b0, b1 = y1, min(h, y1 + d)
    below = image[b0:b1, x0:x1]
    beside = [image[b0:b1, max(0, x0 - s):x0], image[b0:b1, x1:min(w, x1 + s)]]
    n_side = sum(a.size for a in beside)
    if b1 - b0 < 2 or n_side == 0:
        return {"contrast": 0.0, "log_ratio": 0.0, "valid": 0.0}
    mb = float(below.mean(dtype=np.float64))
    ms = float(sum(a.sum(dtype=np.float64) for a in beside) / n_side)
    return {"contrast": (mb - ms) / 255.0, "log_ratio": math.log((mb + 1) / (ms + 1)), "valid": 1.0}


def lesion_features(image: np.ndarray, mask: np.ndarray | None, **params) -> dict[str, float]:
    """Every lesion descriptor (``feature_names()``) of ``mask`` on the uint8 ``image``.

    ``mask`` may be any lesion mask of the image's size (ground truth → *oracle* features,
    a segmenter's → *predicted*); None or empty → ``neutral_lesion_features()``.
    ``params``: see ``analyse_lesion``.
    """
    return analyse_lesion(image, mask, **params)[0]


def analyse_lesion(image: np.ndarray, mask: np.ndarray | None, *, min_pixels: int = 16,
                   ring_width: float = 0.5, edge_sigma: float = 1.5, edge_band_px: int = 3,
                   posterior_depth: float = 0.5, posterior_side: float = 0.5,
                   ) -> tuple[dict[str, float], np.ndarray | None]:
    """(``lesion_features``, the lesion they describe: bool mask or None when no lesion)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"image must be 2-D uint8, got {image.dtype} {image.shape}")
    if mask is None:
        return neutral_lesion_features(), None
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    lesion, n_comp, area_all = main_lesion(mask, min_pixels)
    if lesion is None:
        return neutral_lesion_features(), None
    h, w = image.shape
    shape = shape_descriptors(lesion, (h, w))
    shape["n_components"] = float(n_comp)
    shape["area_frac_all"] = area_all / (h * w)

    # Work in a window that holds the lesion, its ring, edge bands and the gradient support.
    area = float(lesion.sum())
    ring_px = max(3.0, ring_width * math.sqrt(area / math.pi))
    pad = int(math.ceil(max(ring_px, edge_band_px) + 4 * edge_sigma)) + 2
    y0, y1, x0, x1 = _bbox(lesion)
    wy0, wy1, wx0, wx1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    img = image[wy0:wy1, wx0:wx1]
    les = lesion[wy0:wy1, wx0:wx1]
    inside = les.astype(np.uint8)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ring = (d_out > 0) & (d_out <= ring_px)

    les_st = histogram_stats(histogram(img[les]))
    ring_st = histogram_stats(histogram(img[ring]))
    img_mean = float(image.mean(dtype=np.float64))
    has_ring = bool(ring.any())
    echo = {
        "rel_ring": (les_st["mean"] - ring_st["mean"]) / 255.0 if has_ring else 0.0,
        "rel_image": (les_st["mean"] - img_mean) / 255.0,
        "ratio_ring": (les_st["mean"] + 1) / (ring_st["mean"] + 1) if has_ring else 0.0,
        "heterogeneity": (les_st["std"] + 1) / (ring_st["std"] + 1) if has_ring else 0.0,
    }

    grad = gradient_magnitude(img, edge_sigma)
    ribbon = ((d_out > 0) & (d_out <= 1)) | ((d_in > 0) & (d_in <= 1))
    outer = _mean(img, (d_out > 0) & (d_out <= edge_band_px))
    inner = _mean(img, (d_in > 0) & (d_in <= edge_band_px))
    edge = {
        "gradient": float(grad[ribbon].mean()) / 255.0 if ribbon.any() else 0.0,
        "contrast": (outer - inner) / 255.0 if outer is not None and inner is not None else 0.0,
    }
    post = posterior_features(image, lesion, posterior_depth, posterior_side)

    out = {"has_lesion": 1.0}
    out.update({f"shape_{k}": float(v) for k, v in shape.items()})
    out.update({f"echo_{k}": float(v) for k, v in echo.items()})
    out.update({f"edge_{k}": float(v) for k, v in edge.items()})
    out.update({f"post_{k}": float(v) for k, v in post.items()})
    out.update({f"les_{k}": v for k, v in les_st.items()})
    out.update({f"ring_{k}": v for k, v in ring_st.items()})
    return {k: out[k] for k in sorted(out)}, lesion
