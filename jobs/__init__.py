"""Entry points: one per stage, runnable from the `seqrec` CLI and with spark-submit."""
