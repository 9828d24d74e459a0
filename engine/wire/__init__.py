"""The wire contract: topics, records, decoding and encoding of every payload and file line (the only place the contract is written)."""
