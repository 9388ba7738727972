"""The communes' and finance's window: server-rendered pages for usage, allocation and month closing.

Pages are built from the same report documents as the API and the CLI (so a figure on a page is the
figure finance imports), rendered server-side with Jinja2 (autoescaped), with SVG charts and vendored
CSS: the daemon often has no Internet, and nothing here loads from a CDN.
"""
