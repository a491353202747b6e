"""VinDr-CXR's weighted box fusion of the readers' boxes."""

from cxr_d2.data.datasets.vindr_cxr import weighted_box_fusion


def test_weighted_box_fusion_by_hand():
    boxes = [[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [0, 0, 10, 10]]
    labels = [0, 0, 0, 1]
    fused = sorted(weighted_box_fusion(boxes, labels))
    # boxes 0 and 1: IoU 80/120 = .67 > .5 -> mean [1, 0, 11, 10]; the others stay alone.
    assert fused == [([0, 0, 10, 10], 1, 1), ([1, 0, 11, 10], 0, 2), ([50, 50, 60, 60], 0, 1)]
    # weights: the heavier box pulls the fused box towards itself.
    ((box, _, n),) = weighted_box_fusion([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0], [3, 1])
    assert n == 2 and box == [0.5, 0, 10.5, 10]
