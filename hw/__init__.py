""""""Engine RTL in Amaranth (issue: Engine RTL). Empty until that lands."""
