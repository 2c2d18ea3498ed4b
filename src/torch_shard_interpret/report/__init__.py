"""The HTML report behind ``tsi report``: predictions, logit lens, DLA, attention patterns and saliency."""

from ._build import HeadPattern as HeadPattern
from ._build import ReportData as ReportData
from ._build import ReportOutputError as ReportOutputError
from ._build import build_report as build_report
from ._build import default_out_dir as default_out_dir
from ._build import write_report as write_report
from ._html import render as render

__all__ = [
    "HeadPattern",
    "ReportData",
    "ReportOutputError",
    "build_report",
    "default_out_dir",
    "render",
    "write_report",
]
