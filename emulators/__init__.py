"""Local stand-ins for services this project talks to (never deployed)."""
