"""Monthly cost estimates of a stage from what the program registers (scripts/estimate-cost)."""
