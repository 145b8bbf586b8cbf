"""`wmtool play`: a web page where a person drives a run's world model with the keyboard,
beside the real env (session.py: the play itself; server.py: the page and its WebSocket)."""
