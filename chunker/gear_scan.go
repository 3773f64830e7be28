package chunker

// scanGear finds the first gear candidate in b; see scanGeneric for the contract.
func scanGear(b []byte, thr uint64) int { return scanGeneric(b, thr) }
