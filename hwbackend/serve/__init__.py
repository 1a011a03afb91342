"""Ray Serve integration: live engines behind an OpenAI-compatible endpoint, routed by a schedgym policy.

``app`` (deployments, ``build_app``, ``start``), ``router`` (``PolicyRouter``), ``state`` (replica specs and the
baselines' view of the replicas), ``protocol`` (the ``/v1/completions`` wire format), ``loadtest`` (trace replay
client). Importing this package imports nothing heavy; ``app`` and ``router`` need ``ray[serve]``.
"""
