"""`sitivmon demo`: the daemon on a demo configuration, polling local agents it starts itself."""
