"""ibg-audit: operator toolkit for an Interactive Brokers Gateway."""
