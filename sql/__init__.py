"""REDCap configuration SQL: the default file and its generator (docs/configuration-sql.md)."""
