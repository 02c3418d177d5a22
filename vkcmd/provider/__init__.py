"""The provider: runs the node's pods on the process runtime (the virtual-kubelet term).

Sits between ``vkcmd.pods`` (what to run, and pod status arithmetic) and
``vkcmd.runtime`` (processes) on one side and the Kubernetes side on the
other, which it reaches only through the ``PodSink`` protocol. It imports
neither the ``kubernetes`` package nor anything that serves HTTP.
"""

from vkcmd.provider.manager import PodManager, PodSink

__all__ = ["PodManager", "PodSink"]
