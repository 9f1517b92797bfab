"""Stage 4, online: each player's latest features in DynamoDB and the decisions made from them.

store (items, writer, reader, table administration), export (which items the export job
writes and the online_features snapshot), local_dynamodb (the moto server for development and
tests), decisions (store + model + policy). Depends on model, features, earlier stages and the
shared base.
"""
