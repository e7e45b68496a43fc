"""Architectures as data: the search-space view of a model (``space``), reading architecture
files (``formats``), turning an architecture into a plain network (``fix``) and a supernet split
into sub-supernets (``few_shot``)."""
from .few_shot import FewShotSupernet, split_labels
from .fix import FixedInput, fix, fix_module
from .formats import from_nni3, from_nni_legacy, parse_arch
from .space import Arch, ArchError, Rng, SearchSpace

__all__ = ["Arch", "ArchError", "Rng", "SearchSpace", "parse_arch", "from_nni_legacy", "from_nni3", "fix",
           "fix_module", "FixedInput", "FewShotSupernet", "split_labels"]
