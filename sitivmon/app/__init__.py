"""The composition root: the only package that imports every feature.

It holds the full configuration type (core sections plus each feature's), its loader, the daemon that
enters every service on one exit stack and task group, and the command line.
"""
