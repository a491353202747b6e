"""The error-analysis page: TP, FP and missed lesions per image, in one self-contained HTML."""

from .matching import Counts, candidate_pairs, count_errors
from .page import build_page_data, dataset_ground_truth, render_html, write_page

__all__ = [
    "Counts",
    "candidate_pairs",
    "count_errors",
    "build_page_data",
    "dataset_ground_truth",
    "render_html",
    "write_page",
]
