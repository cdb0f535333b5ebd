"""tfdeepfake: deepfake image detectors with Keras 3 / TensorFlow.

Labels everywhere: real = 0, fake = 1; a score is the probability of *fake*.
"""

import os as _os

# Keep TensorFlow's C++ start-up chatter out of the user's terminal unless asked for.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

CLASS_NAMES: tuple[str, str] = ("real", "fake")
"""Class names indexed by label: ``CLASS_NAMES[0] == "real"``, ``CLASS_NAMES[1] == "fake"``."""

DEFAULT_THRESHOLD = 0.5
"""P(fake) at or above which an image is called fake when no threshold was chosen on validation."""
