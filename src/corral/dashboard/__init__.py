"""The web dashboard: server-rendered pages at `/`, live over Server-Sent Events."""
