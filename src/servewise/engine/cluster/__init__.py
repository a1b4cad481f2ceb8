"""Load workers on a Ray cluster: one actor per requested CPU, spread over its nodes, each running the
same worker loop as a local process (``engine/worker.py``), with the driver's clock, losses and per-node
client checks accounted for. Ray is optional (``servewise[ray]``) and imported only when asked for."""
