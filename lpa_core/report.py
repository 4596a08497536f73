"""Tables and figures from result CSVs (placeholder, filled in below)."""


def add_commands(sub):
    pass
