"""The HTML report behind ``tsi report``: predictions, logit lens, DLA, attention patterns and saliency, then one
section per registered technique (``register_technique``: also a ``tsi serve`` tab and a ``tsi`` subcommand)."""

from ._build import HeadPattern as HeadPattern
from ._build import ReportData as ReportData
from ._build import ReportOutputError as ReportOutputError
from ._build import build_report as build_report
from ._build import default_out_dir as default_out_dir
from ._build import write_report as write_report
from ._html import render as render
from ._techniques import Technique as Technique
from ._techniques import register_technique as register_technique
from ._techniques import techniques as techniques
from ._techniques import unregister_technique as unregister_technique

__all__ = [
    "HeadPattern",
    "ReportData",
    "ReportOutputError",
    "Technique",
    "build_report",
    "default_out_dir",
    "register_technique",
    "render",
    "techniques",
    "unregister_technique",
    "write_report",
]
