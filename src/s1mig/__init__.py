"""s1mig: the SMETS1 Migration Reporting warehouse."""

__version__ = "0.1.0"
