# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""The core engine: sites, hooks, caches and interventions. Depends on torch only.

Nothing here imports ``adapters/`` or any technique; ``tsi.wrap`` (which picks an adapter) lives one
level up, in ``torch_shard_interpret._wrap``.
"""

from ._adapter import Adapter as Adapter
from ._cache import ActivationCache as ActivationCache
from ._config import ModelConfig as ModelConfig
from ._errors import AdapterError as AdapterError
from ._errors import GradModeError as GradModeError
from ._errors import InputError as InputError
from ._errors import InterventionError as InterventionError
from ._errors import ModelNotFoundError as ModelNotFoundError
from ._errors import PositionError as PositionError
from ._errors import ReadOnlySiteError as ReadOnlySiteError
from ._errors import ReentrantRunError as ReentrantRunError
from ._errors import ShapeMismatchError as ShapeMismatchError
from ._errors import SiteNotFoundError as SiteNotFoundError
from ._errors import SiteNotReachedError as SiteNotReachedError
from ._errors import TsiError as TsiError
from ._interventions import Ablate as Ablate
from ._interventions import Add as Add
from ._interventions import Fn as Fn
from ._interventions import HookContext as HookContext
from ._interventions import Intervention as Intervention
from ._interventions import Patch as Patch
from ._interventions import ProjectOut as ProjectOut
from ._interventions import Scale as Scale
from ._interventions import Set as Set
from ._model import Model as Model
from ._model import RunResult as RunResult
from ._site import Site as Site

__all__ = [
    "Adapter",
    "Ablate",
    "ActivationCache",
    "Add",
    "AdapterError",
    "Fn",
    "GradModeError",
    "HookContext",
    "InputError",
    "Intervention",
    "InterventionError",
    "Model",
    "ModelConfig",
    "ModelNotFoundError",
    "Patch",
    "PositionError",
    "ProjectOut",
    "ReadOnlySiteError",
    "ReentrantRunError",
    "RunResult",
    "Scale",
    "Set",
    "ShapeMismatchError",
    "Site",
    "SiteNotFoundError",
    "SiteNotReachedError",
    "TsiError",
]
