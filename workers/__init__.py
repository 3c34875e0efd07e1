"""rq job entry points: thin functions taking ids, each opening its own session and calling the domain.

Their import paths are a contract while jobs sit in a queue (see ``app/queues.py``).
"""
