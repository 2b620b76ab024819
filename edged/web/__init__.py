"""The web view: the HTTP listener, its image helpers and static page."""
