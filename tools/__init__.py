"""Developer tools that are not part of the rawbg package."""
