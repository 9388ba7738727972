"""Cost allocation: split each shared project's monthly budget between communes, exactly to the cent.

The pure pieces (`arithmetic`, `engine`, `formats`) take plain values so that finance can re-run an
allocation on corrected figures and get the same bytes; I/O lives in `archive`, `api` and `cli`.
"""
