"""Who may use the console and what they did: accounts, API tokens, sessions and the access log (a room of the store: its tables live in the same SQLite file)."""
