"""Mode collapse in one place: the signals (pure functions), the monitor callback, rollback and remedies."""
