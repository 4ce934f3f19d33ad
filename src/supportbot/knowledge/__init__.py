"""FAQ knowledge: embedders, the in-process FAQ index, the match decision and sync."""
