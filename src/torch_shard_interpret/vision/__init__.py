"""Vision: attribution to pixels with sanity checks, feature visualisation and checkerboard diagnosis on any
image model (images are ``[batch, C, H, W]``)."""

from ._cam import grad_cam as grad_cam
from ._cam import grad_cam_pp as grad_cam_pp
from ._cam import occlusion as occlusion
from ._checkerboard import THRESHOLD as checkerboard_threshold
from ._checkerboard import CheckerboardResult as CheckerboardResult
from ._checkerboard import checkerboard as checkerboard
from ._checkerboard import overlap_map as overlap_map
from ._checkerboard import stride_share as stride_share
from ._examples import DatasetExamples as DatasetExamples
from ._examples import dataset_examples as dataset_examples
from ._featvis import FeatureVis as FeatureVis
from ._featvis import visualize as visualize
from ._gradients import gradient_x_input as gradient_x_input
from ._gradients import integrated_gradients as integrated_gradients
from ._gradients import make_baseline as make_baseline
from ._gradients import saliency as saliency
from ._gradients import smoothgrad as smoothgrad
from ._guided import guided_backprop as guided_backprop
from ._labels import random_label_model as random_label_model
from ._objectives import Objective as Objective
from ._objectives import channel as channel
from ._objectives import direction as direction
from ._objectives import diversity as diversity
from ._objectives import neuron as neuron
from ._param import ImageParam as ImageParam
from ._param import Transforms as Transforms
from ._report import build as report
from ._report import build_from_bytes as report_from_bytes
from ._result import Attribution as Attribution
from ._result import custom as custom
from ._sanity import SanityReport as SanityReport
from ._sites import eager_attention as eager_attention
from ._sites import site_map as site_map
from ._sites import wrap as wrap
from ._zoo import load as load

__all__ = [
    "Attribution",
    "DatasetExamples",
    "FeatureVis",
    "ImageParam",
    "Objective",
    "Transforms",
    "channel",
    "dataset_examples",
    "direction",
    "diversity",
    "neuron",
    "visualize",
    "CheckerboardResult",
    "checkerboard",
    "checkerboard_threshold",
    "overlap_map",
    "stride_share",
    "SanityReport",
    "custom",
    "eager_attention",
    "grad_cam",
    "grad_cam_pp",
    "gradient_x_input",
    "guided_backprop",
    "integrated_gradients",
    "load",
    "make_baseline",
    "occlusion",
    "random_label_model",
    "report",
    "report_from_bytes",
    "saliency",
    "site_map",
    "smoothgrad",
    "wrap",
]
