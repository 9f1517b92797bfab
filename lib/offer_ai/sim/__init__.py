"""Stage 5, sim: the seeded synthetic game whose truth is known (events, decisions, responses).

It stands last: it may use every stage's definitions (the offer catalogue), and nothing in the
pipeline depends on it.
"""
