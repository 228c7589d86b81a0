"""Phase 1, authorize: decide before anything runs, and mint the permit."""
