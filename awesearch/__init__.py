"""awesearch: spoken term detection with acoustic word embeddings."""

from pathlib import Path as _Path

__version__ = "0.1.0"

# The indexer stage is awesearch.indexer. A wheel installs it as awesearch/indexer (pyproject package-dir);
# in a source checkout it is the top-level indexer/ folder (the design card's layout), found here without
# an install. Only that one folder is added: nothing else at the top of the checkout becomes importable.
_CHECKOUT_INDEXER = _Path(__file__).resolve().parent.parent / "indexer"
if not (_Path(__file__).parent / "indexer").is_dir() and (_CHECKOUT_INDEXER / "pipeline.py").is_file():
    import importlib.abc as _abc
    import importlib.util as _util
    import sys as _sys

    class _CheckoutIndexer(_abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "awesearch.indexer":
                return _util.spec_from_file_location(name, _CHECKOUT_INDEXER / "__init__.py",
                                                     submodule_search_locations=[str(_CHECKOUT_INDEXER)])
            return None

    _sys.meta_path.insert(0, _CheckoutIndexer())
