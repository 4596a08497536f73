"""lpa_core: a compact training core for residual networks trained layer by layer (LPA) and their peers."""
__version__ = "0.1.0"
