"""Ingest: raw drops -> ``events`` (each row in its own local day), ``events_quarantine``, ``deliveries``,
``ingest_stats`` and ``late_events``.

Modules: ``drops`` (the drop's files, fingerprint and checks, no JVM), ``reader`` (Spark reads them into raw
rows), ``rows`` (typed rows, their day or the reason they are refused), ``stage`` (accounting, guard rails,
writes). Settings: the ``ingest`` section of featurization/defaults.yaml.
"""

from featurization.ingest.settings import IngestSettings
from featurization.ingest.stage import IngestResult, ingest

__all__ = ["IngestResult", "IngestSettings", "ingest"]
