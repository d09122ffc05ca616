"""Software-defined assets, grouped by domain; thin wiring of the domain modules."""
