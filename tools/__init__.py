"""Harness for the tests, benchmarks and scripts (not installed with the package): live servers
on loopback, the data lookup, a longer fuzz run."""
