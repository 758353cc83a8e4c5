"""The agent: runs where the drives are and reports to the station."""
