"""Scale-out on Ray (the optional ``twin-retrieval[ray]`` extra): ``twin build --ray`` and
``twin groups --ray``. Nothing here imports Ray until a job asks for it."""

from .cluster import LOCAL, Cluster, connect, disconnect, one_line_errors

__all__ = ["LOCAL", "Cluster", "connect", "disconnect", "one_line_errors"]
