"""How a supernet is trained: SPOS now; DARTS, ENAS, ProxylessNAS and FBNet share the same choices."""
from .spos import PathSampler

__all__ = ["PathSampler"]
