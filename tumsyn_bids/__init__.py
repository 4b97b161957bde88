"""tumsyn-bids: text-guided synthesis of missing MRI contrasts as a BIDS-App."""

__version__ = "0.1.0"
__all__ = ["__version__"]
