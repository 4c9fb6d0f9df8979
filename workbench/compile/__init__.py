"""Compiling a spec: loading it into node dataclasses (``load``), its graph (``graph``) and its
per-stage summary (``summary``)."""

from workbench.compile.graph import spec_graph
from workbench.compile.load import build_spec, load_spec, spec_from_dict, spec_from_text

__all__ = ["build_spec", "load_spec", "spec_from_dict", "spec_from_text", "spec_graph"]
