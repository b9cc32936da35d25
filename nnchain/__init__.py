"""nnchain: backpropagation experiments, run on Ray and recorded in MLflow.

Importing this package stays cheap: numpy, ray and mlflow are imported by the
subpackages that use them.
"""

__version__ = "0.1.0"
