"""Processes: the master (control plane) and the workers (data plane); see DESIGN.md."""
