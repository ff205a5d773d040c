"""The trained RL^2 policies, as data: ``<task>/<cell>/policy.pt`` with its ``meta.json`` and ``curve.csv``
(installed as ``rl2bench.zoo``; the training checkpoints stay in the repository)."""
