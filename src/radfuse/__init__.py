"""radfuse: leakage-free deep-learning radiomics for clinical imaging research."""

__version__ = "0.1.0"
