"""Stage 2, features: point-in-time training rows and features as of any time.

window_spec (the anchor, windows and label sections of conf/features.yaml), training (the
window transforms), spec_check (every expression analysed before data is read),
training_export (the SageMaker-ready export), export_reader (reading it back without Spark),
exploration (the explore notebook's aggregates). Depends on ingest and the shared base.
"""
