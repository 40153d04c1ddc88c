"""Linear probes: where in the network a student represents the process step it is writing."""
