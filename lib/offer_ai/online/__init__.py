"""Stage 4, online: each player's latest features in DynamoDB and the decisions made from them.

The store is items (feature row <-> DynamoDB item), writer (BatchWriteItem from the
executors), reader (features for the decision step), table (creation, key check, TTL), with
client (the boto3 client and its failures) and pacing (backoff, write-rate cap) beneath them;
then export (which items the export job writes and the online_features snapshot),
local_dynamodb (the moto server for development and tests), decisions (store + model +
policy); and the decision service: service (the HTTP app), deadline_reader (one item read
within the latency budget), serving_model (the promoted model and its hot swap),
decision_log (decisions back into the raw folder as events), service_metrics (Prometheus).
Depends on model, features, earlier stages and the shared base.
"""
