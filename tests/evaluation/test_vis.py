"""YouTube-VIS scoring (cxr_d2.evaluation.vis) against hand-worked cases and per-pixel loops."""
import numpy as np
import pycocotools.mask as mask_util
import pytest

from cxr_d2.evaluation.vis import evaluate_vis, frame_ap, id_switches, spatio_temporal_iou

H, W = 32, 40


def square(x, y, side=8):
    m = np.zeros((H, W), np.uint8)
    m[y : y + side, x : x + side] = 1
    return m


def rle(mask):
    return mask_util.encode(np.asfortranarray(mask)) if mask is not None else None


def video(length, vid=1):
    return {"id": vid, "height": H, "width": W, "length": length,
            "file_names": [f"v{vid}/{t}.png" for t in range(length)]}


def gt_dataset(tracks, videos=None):
    """tracks: list of (video_id, category_id, [mask or None per frame])."""
    videos = videos or [video(len(tracks[0][2]))]
    anns = []
    for k, (vid, cat, masks) in enumerate(tracks, start=1):
        segs = []
        for m in masks:
            if m is None:
                segs.append(None)
            else:  # YouTube-VIS ground truth stores uncompressed RLE
                r = mask_util.encode(np.asfortranarray(m))
                segs.append({"size": [H, W], "counts": _uncompressed_counts(m)})
                assert mask_util.decode(r).sum() == m.sum()
        anns.append({"id": k, "video_id": vid, "category_id": cat, "iscrowd": 0,
                     "segmentations": segs})
    return {"videos": videos, "categories": [{"id": 1, "name": "nodule"},
                                             {"id": 2, "name": "effusion"}],
            "annotations": anns}


def _uncompressed_counts(mask):
    flat = np.asarray(mask).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def track(masks, score, cat=1, vid=1):
    return {"video_id": vid, "category_id": cat, "score": score,
            "segmentations": [rle(m) for m in masks]}


def pixel_loop_iou(dt_masks, gt_masks):
    inter = union = 0
    for d, g in zip(dt_masks, gt_masks):
        for y in range(H):
            for x in range(W):
                a = d is not None and d[y, x]
                b = g is not None and g[y, x]
                inter += bool(a and b)
                union += bool(a or b)
    return inter / union if union else 0.0


def ap_one_gt(ious_by_score):
    """COCO AP by hand for one ground truth and detections given in score order: at each of
    the ten thresholds the AP is 1 if the first detection reaching it comes first, else the
    precision at that rank (interpolated precision is monotone here)."""
    thresholds = np.linspace(0.5, 0.95, 10)
    aps = []
    for t in thresholds:
        hits = [k for k, iou in enumerate(ious_by_score) if iou >= t - 1e-12]
        aps.append(1.0 / (hits[0] + 1) if hits else 0.0)
    return float(np.mean(aps)), aps[0], aps[5]


def test_spatio_temporal_iou_equals_a_pixel_loop():
    gt = [square(2, 2), square(4, 3), None, square(10, 10)]
    dt = [square(3, 2), None, square(0, 0), square(10, 12)]
    got = spatio_temporal_iou([rle(m) for m in dt], [rle(m) for m in gt])
    assert got == pytest.approx(pixel_loop_iou(dt, gt), abs=1e-12)
    # by hand: frame 0: 56/72, frame 1: 0/64, frame 2: 0/64, frame 3: 48/80
    assert got == pytest.approx((56 + 48) / (72 + 64 + 64 + 80))


def test_identity_switch_halfway():
    """One object over 4 frames, tracked as A for frames 0-1 and as B for 2-3: each track has
    IoU 2a/4a = 0.5, so only the threshold 0.5 is reached, by the first track in score order;
    the second is a false positive there."""
    obj = [square(5, 5)] * 4
    gt = gt_dataset([(1, 1, obj)])
    a = track([obj[0], obj[1], None, None], 0.9)
    b = track([None, None, obj[2], obj[3]], 0.8)
    res = evaluate_vis(gt, [a, b])
    ap, ap50, ap75 = ap_one_gt([0.5, 0.5])
    assert (res["AP"], res["AP50"], res["AP75"]) == pytest.approx((ap, ap50, ap75))
    assert (res["AP"], res["AP50"], res["AP75"]) == pytest.approx((0.1, 1.0, 0.0))
    assert res["AR@1"] == pytest.approx(0.1)
    switches = id_switches(gt, [a, b])
    assert switches == {"id_switches": 1, "matched_frames": 4, "gt_frames": 4}
    # frame by frame every mask is right: the per-frame AP does not see the switch
    assert frame_ap(gt, [a, b])["AP"] == pytest.approx(1.0)


def test_track_lost_and_found_again():
    """Missed in frame 2 of 4, same identity before and after: IoU 3/4 and no switch."""
    obj = [square(5, 5), square(6, 5), square(7, 5), square(8, 5)]
    gt = gt_dataset([(1, 1, obj)])
    t = track([obj[0], obj[1], None, obj[3]], 0.7)
    res = evaluate_vis(gt, [t])
    assert res["AP"] == pytest.approx(ap_one_gt([0.75])[0]) == pytest.approx(0.6)
    assert (res["AP50"], res["AP75"]) == pytest.approx((1.0, 1.0))
    assert id_switches(gt, [t]) == {"id_switches": 0, "matched_frames": 3, "gt_frames": 4}


def test_frame_without_the_object():
    """The object is absent from frame 1; a prediction there adds its area to the union only."""
    obj = [square(5, 5), None, square(5, 5)]
    gt = gt_dataset([(1, 1, obj)])
    spurious = square(20, 20, side=4)
    t = track([obj[0], spurious, obj[2]], 0.9)
    iou = pixel_loop_iou([obj[0], spurious, obj[2]], obj)
    assert iou == pytest.approx(128 / (128 + 16))
    res = evaluate_vis(gt, [t])
    assert res["AP"] == pytest.approx(ap_one_gt([iou])[0])


def test_classes_videos_and_iou_ranking():
    """Two videos, two classes: a wrong-class track never matches, and per-category AP is
    averaged over categories as COCO does."""
    v1 = [square(2, 2), square(2, 2)]
    v2 = [square(20, 10), square(21, 10)]
    gt = gt_dataset([(1, 1, v1), (2, 2, v2)], videos=[video(2, 1), video(2, 2)])
    exact1 = track(v1, 0.9, cat=1, vid=1)
    wrong_class = track(v2, 0.95, cat=1, vid=2)
    half2 = track([v2[0], None], 0.6, cat=2, vid=2)
    res = evaluate_vis(gt, [exact1, wrong_class, half2])
    # category 1: the exact track (0.9) ranks below a false positive in another video (0.95)
    cat1 = ap_one_gt([0.0, 1.0])[0]
    cat2 = ap_one_gt([0.5])[0]
    assert res["AP"] == pytest.approx((cat1 + cat2) / 2)
    assert res["AR@10"] == pytest.approx((1.0 + 0.1) / 2)


def test_empty_results_score_zero():
    gt = gt_dataset([(1, 1, [square(1, 1)])])
    assert evaluate_vis(gt, [])["AP"] == pytest.approx(0.0)


def test_polygon_ground_truth_matches_its_mask():
    m = square(4, 4, side=10)
    gt = gt_dataset([(1, 1, [m])])
    gt["annotations"][0]["segmentations"] = [[[4, 4, 14, 4, 14, 14, 4, 14]]]
    res = evaluate_vis(gt, [track([m], 0.9)])
    poly = mask_util.decode(mask_util.merge(mask_util.frPyObjects([[4, 4, 14, 4, 14, 14, 4, 14]],
                                                                   H, W)))
    assert res["AP"] == pytest.approx(ap_one_gt([pixel_loop_iou([m], [poly])])[0])
