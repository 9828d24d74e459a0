"""A batch step's records in one ledger row: the Merkle tree that proves one of them alone
(merkle.py) and the index that finds a device's records in those rows (index.py)."""
