"""The evidence pack: per alert, documents a court or a case file can take (a PDF with a
map picture, the fixes, the decision in words, the ledger position and the signed
checkpoint; GeoJSON of the track and zone; a manifest of the ledger rows cited).

A room of its own because it is none of its neighbours: it reads the store read-only
(engine/store/reading.py) and renders documents, so it is not the store (it writes no
table, and the store has no business with PDF or map drawing); it decides nothing, so it
is not engine/core; and it is reached from the command line (`tagwatch audit export
--alert`) as much as from the console, which only serves what `build_pack` returns."""

from engine.evidence.pack import Pack, build_pack, write_pack

__all__ = ["Pack", "build_pack", "write_pack"]
