//go:build !amd64 || purego

package chunker

// useGearAccel reports whether scanGear has a faster implementation than
// scanGeneric; only amd64 has one.
var useGearAccel = false

// scanGear finds the first gear candidate in b; see scanGeneric for the contract.
func scanGear(b []byte, thr uint64) int { return scanGeneric(b, thr) }

// scanGearAccel is the accelerated scan; there is none here.
func scanGearAccel(b []byte, thr uint64) int { return scanGeneric(b, thr) }

// gearEdges returns, for tests, where the accelerated scan starts its lanes:
// nowhere.
func gearEdges(n int, thr uint64) []int { return nil }
