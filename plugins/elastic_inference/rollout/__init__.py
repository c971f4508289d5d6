"""The safe rollout over the serving-backend interface: decide (first deployment, or a canary beside the stable
version), analyse each canary step against the stable version, promote or roll back, and prove no request failed.

``plan`` and ``analysis`` are pure; ``traffic`` (the labelled load and the background prober) and ``versions``
(what each replica's model server serves) do the HTTP; the operators in ``operators/rollout.py`` put them together.
"""
