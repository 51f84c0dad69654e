"""absl flag definitions shared by the entry points (`train.main`, `eval.*`)."""
