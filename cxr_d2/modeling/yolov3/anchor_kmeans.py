"""K-means of box shapes with 1 - IoU as the distance (YOLOv2/v3's anchor clustering)."""

import numpy as np

__all__ = ["wh_iou_np", "kmeans_iou", "yolov3_anchors_from_clusters", "ssd_priors_from_clusters"]


def wh_iou_np(wh, centroids):
    """IoU of (w, h) pairs at a common centre: (B, 2) x (K, 2) -> (B, K)."""
    inter = np.minimum(wh[:, None, 0], centroids[None, :, 0]) * np.minimum(
        wh[:, None, 1], centroids[None, :, 1]
    )
    union = (wh[:, 0] * wh[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None, :] - inter
    return inter / union


def kmeans_iou(wh, k, seed=0, max_iter=300):
    """
    Cluster box shapes with d(box, centroid) = 1 - IoU(box, centroid), centroids updated to the
    median shape of their boxes; k-means++ initialisation, seeded.

    Args:
        wh (ndarray[B, 2]): box widths and heights (B >= k).
        k (int): number of clusters.

    Returns:
        centroids (ndarray[k, 2]) sorted by area, mean_iou (float): the mean over boxes of the
        IoU with their best centroid.
    """
    wh = np.asarray(wh, dtype=np.float64)
    if len(wh) < k:
        raise ValueError(f"{len(wh)} boxes cannot make {k} clusters; use fewer anchors")
    rng = np.random.default_rng(seed)
    centroids = wh[[rng.integers(len(wh))]]
    while len(centroids) < k:  # k-means++: far (low IoU) boxes are likelier next centroids
        d = 1 - wh_iou_np(wh, centroids).max(axis=1)
        p = d**2 / (d**2).sum() if d.sum() > 0 else None
        centroids = np.vstack([centroids, wh[rng.choice(len(wh), p=p)]])
    assign = None
    for _ in range(max_iter):
        iou = wh_iou_np(wh, centroids)
        new = iou.argmax(axis=1)
        if assign is not None and (new == assign).all():
            break
        assign = new
        for c in range(k):
            members = wh[assign == c]
            # an empty cluster restarts at the box its centroid fits worst
            centroids[c] = (
                np.median(members, axis=0) if len(members) else wh[iou.max(axis=1).argmin()]
            )
    centroids = centroids[np.argsort(centroids[:, 0] * centroids[:, 1])]
    return centroids, float(wh_iou_np(wh, centroids).max(axis=1).mean())


def yolov3_anchors_from_clusters(centroids, num_levels=3):
    """(K, 2) centroids sorted by area -> K / num_levels anchors per level, finest first."""
    per = len(centroids) // num_levels
    if per * num_levels != len(centroids):
        raise ValueError(f"{len(centroids)} anchors do not split into {num_levels} levels evenly")
    return [
        [[round(float(w), 1), round(float(h), 1)] for w, h in centroids[i * per : (i + 1) * per]]
        for i in range(num_levels)
    ]


def ssd_priors_from_clusters(centroids):
    """
    One cluster per SSD source layer (sorted by area): MIN_SIZES = sqrt(area) of each
    centroid, MAX_SIZES = the next layer's min size (the last one extended by the same ratio),
    ASPECT_RATIOS = [2] plus the centroid's elongation max(w/h, h/w) rounded to 0.1 when it
    is at least 1.3 and not 2.

    Returns:
        dict with MIN_SIZES, MAX_SIZES, ASPECT_RATIOS.
    """
    sizes = [float(np.sqrt(w * h)) for w, h in centroids]
    last = sizes[-1] * (sizes[-1] / sizes[-2] if len(sizes) > 1 else 1.5)
    max_sizes = sizes[1:] + [last]
    ratios = []
    for w, h in centroids:
        r = round(float(max(w / h, h / w)), 1)
        ratios.append([2.0] if r < 1.3 or r == 2.0 else sorted([2.0, r]))
    return {
        "MIN_SIZES": [round(s, 1) for s in sizes],
        "MAX_SIZES": [round(s, 1) for s in max_sizes],
        "ASPECT_RATIOS": ratios,
    }
