"""Stage 3, model: the offer catalogue, the XGBoost model, the ε-greedy policy, evaluation
(regression and off-policy) and training on SageMaker (script-mode entry point and launch);
candidate_scorer (one player's candidates at request time), and the promotion: promotion (the
guard), promotion_inputs (the candidate and its export, local or from S3/SageMaker),
model_registry (versioned folders and the CURRENT pointer).

Depends on features (the export reader), earlier stages and the shared base.
"""
