"""Search spaces, registered by name (Hydra group ``search_space``)."""

from lightning_nas.spaces.base import SPACES, SearchSpace, register_space

__all__ = ["SPACES", "SearchSpace", "register_space"]
