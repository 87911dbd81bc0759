"""Raw inputs for `seqrec ingest`, kept apart from featurization: the synthetic event generator and the
adapters that turn public datasets into the generic event format."""
