"""vkcmd: join a machine to a Kubernetes cluster as a node and run its pods as process groups.

Layers (lower never imports higher): ``fsm`` (stdlib) <- ``vkcmd.machines`` (the state tables)
<- {``vkcmd.kube`` (API side), ``vkcmd.runtime`` (processes), ``vkcmd.kubeletapi`` (HTTP)}
<- ``vkcmd.app`` (wires the threads).
"""

__version__ = "0.1.0"
