package peer

// TakeManifestSlots takes every free manifest upload slot of e, as
// manifest uploads in progress would, and returns the function that frees
// them.
func TakeManifestSlots(e *Engine) (release func()) {
	n := 0
	for e.acquireManifestSlot() {
		n++
	}
	return func() {
		for range n {
			e.releaseManifestSlot()
		}
	}
}
