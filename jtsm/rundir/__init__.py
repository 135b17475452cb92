"""Run folders and the other folders jtsm writes: their layout (:mod:`.layout`), what made
them and what a command may do with them (:mod:`.fingerprint`), checkpoints
(:mod:`.checkpoint`), outputs replaced as a set (:mod:`.staging`) and the lock a writing
command holds (:mod:`.lock`).

This package sits below the engine: data, proposals and the engine's stages use it, and it
imports none of them.
"""
