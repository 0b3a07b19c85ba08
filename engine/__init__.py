"""Triangle Lab engine: the three vertices (prompt, parameter, reward), the six edges between them,
one model host, and a job runner. No UI code lives here."""
