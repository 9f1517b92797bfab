"""Stage 3, model: the offer catalogue, the XGBoost model, the ε-greedy policy, evaluation
(regression and off-policy) and training on SageMaker (script-mode entry point and launch).

Depends on features (the export reader), earlier stages and the shared base.
"""
