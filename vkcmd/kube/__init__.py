"""The Kubernetes side: the API edge, watch-backed caches, the node, the pods' API state.

Talks to the API server only through ``vkcmd.kube.client``; never spawns or
signals processes (that is ``vkcmd.runtime``) and serves no HTTP.
"""
