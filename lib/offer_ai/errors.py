"""Errors a user can fix (bad input, bad config) — reported as one sentence, not a stack trace."""


class UserError(Exception):
    """A mistake in what the user asked for; the message is the sentence they will read."""
