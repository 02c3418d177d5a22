"""The HTTPS kubelet API: TLS, authentication and authorization, logs, stats, metrics, exec/attach/port-forward.

Owns the wire side of SPEC §4. It serves what a :class:`~vkcmd.kubeletapi.backend.Backend`
answers and never reaches into the runtime or the API client itself: token and
access reviews are injected callables (``vkcmd.kube.reviews`` provides them), and
it imports neither ``kubernetes`` nor ``subprocess`` (``tests/unit/test_layers.py``).
Pure parts (``summary``, ``resource_metrics``, ``auth.request_attributes``, the
``spdy`` codec) are separate from the wire (``transport``) and the thin handlers
(``routes``, ``streams``, ``wsstreams``, ``portforward``).
"""
