"""What the agent and the station say to each other: jobs and events, typed
and versioned, shared by both sides."""
