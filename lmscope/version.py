"""lmscope's version, in a module of its own (the package and the runs' manifests read it)."""

__version__ = "0.1.0"
