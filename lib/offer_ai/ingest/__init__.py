"""Stage 1, ingest: raw JSON-lines files -> typed events, the quarantine, sessions and users.

raw_files (find and read the landing files), events (parse, validate, key), feature_spec (the
session and identity sections of conf/features.yaml), sessions and users (pure transforms), and
sessionize (the storage steps the sessionize job runs). Depends only on the shared base.
"""
