"""Python implementations behind the .sh/.bat scripts (one implementation per script)."""
