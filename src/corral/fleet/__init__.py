"""The fleet over SSH: an inventory of hosts by role, pushed to without an agent."""
