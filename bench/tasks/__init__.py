"""Task bodies shared by every system, and each peer's task module."""
