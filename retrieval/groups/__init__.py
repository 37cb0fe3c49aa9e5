"""Duplicate groups inside a corpus: self-join, linkage, and the job that ties them to a corpus."""

from .grouper import Grouper, Grouping, Units, write_groups, write_pairs
from .join import Pairs, self_join
from .linkage import KEEP_RULES, LINKAGES, link

__all__ = ["KEEP_RULES", "LINKAGES", "Grouper", "Grouping", "Pairs", "Units", "link", "self_join", "write_groups",
           "write_pairs"]
