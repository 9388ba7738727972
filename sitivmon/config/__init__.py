"""The core configuration: typed data validated at load, every error reported with its place in the file.

`model` holds the core sections, `loader` the generic validation with located errors, `crossref` the
core's references between sections. Features add their own sections in the composition root
(`sitivmon.app.config`), which is where the full `SitivmonConfig` and `load_config` live. Nothing is
imported here, so that reading a config type does not load the loader.
"""
