"""Analysis tools that read a trained model's weights and activations for known structure.

keys = tsi.analysis.fourier_key_frequencies(task.model)     # modular addition: e.g. [4, 11, 17]
"""

from ._fourier import fourier_basis as fourier_basis
from ._fourier import fourier_key_frequencies as fourier_key_frequencies
from ._fourier import fourier_spectrum as fourier_spectrum
from ._fourier import project_onto as project_onto
from ._fourier import variance_explained as variance_explained

__all__ = [
    "fourier_basis",
    "fourier_key_frequencies",
    "fourier_spectrum",
    "project_onto",
    "variance_explained",
]
