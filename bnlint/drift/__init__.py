"""Running statistics against served data: BN021 and ``bnlint recalibrate``.

- :mod:`~bnlint.drift.samples` reads the ``--sample-data`` file (validated, streamed);
- :mod:`~bnlint.drift.sites` lists the BNs that can be measured and their depths;
- :mod:`~bnlint.drift.collect` (with ``collect_onnx`` and ``collect_torch``) runs the model
  batch by batch and accumulates per-channel moments (:mod:`~bnlint.drift.moments`);
- :mod:`~bnlint.drift.profile` and :mod:`~bnlint.drift.significance` compare them with the
  running statistics; :mod:`~bnlint.drift.diagnose` names where the drift starts and why;
- :mod:`~bnlint.drift.check` and :mod:`~bnlint.drift.findings` are what BN021 calls;
- :mod:`~bnlint.drift.recalibrate`, :mod:`~bnlint.drift.write` and :mod:`~bnlint.drift.cli`
  make ``bnlint recalibrate``.

Nothing here is imported unless a run gives samples: linting without them costs nothing.
"""
