package scenario

import (
	"time"

	"github.com/p2pd/p2pd/internal/units"
)

// Overrides are the common knobs `p2pctl testbed run` takes as flags; a
// nil field leaves the scenario's value.
type Overrides struct {
	Peers    *int
	BlobSize *int64
	PeerUp   *units.Rate
	PeerDown *units.Rate
	OriginUp *units.Rate
	Latency  *time.Duration
	Seed     *uint64
	Mode     *Mode
}

// Apply returns s with o applied, defaults filled, and validated. Peers
// resizes the fleet: with one class, that class; with several, every
// class in proportion (each keeping at least one peer if it had any).
// PeerUp, PeerDown and Latency apply to every class; Latency to the
// origins as well.
func (o Overrides) Apply(s Scenario) (Scenario, error) {
	s.Classes = append([]Class(nil), s.Classes...)
	if o.Peers != nil {
		s.resize(*o.Peers)
	}
	if o.BlobSize != nil {
		s.Blob.Size = units.Size(*o.BlobSize)
	}
	for i := range s.Classes {
		c := &s.Classes[i]
		if o.PeerUp != nil {
			c.Up = *o.PeerUp
		}
		if o.PeerDown != nil {
			c.Down = *o.PeerDown
		}
		if o.Latency != nil {
			c.Latency = *o.Latency
		}
	}
	if o.OriginUp != nil {
		s.Origins.Up = *o.OriginUp
	}
	if o.Latency != nil {
		s.Origins.Latency = *o.Latency
	}
	if o.Seed != nil {
		s.Seed = *o.Seed
	}
	if o.Mode != nil {
		s.Mode = *o.Mode
	}
	s = s.WithDefaults()
	return s, s.Validate()
}

func (s *Scenario) resize(n int) {
	total := s.NumPeers()
	if len(s.Classes) == 1 || total == 0 {
		s.Classes[0].Count = n
		for i := 1; i < len(s.Classes); i++ {
			s.Classes[i].Count = 0
		}
		return
	}
	left := n
	for i := range s.Classes {
		c := &s.Classes[i]
		if i == len(s.Classes)-1 {
			c.Count = max(left, 0)
			break
		}
		k := c.Count * n / total
		if c.Count > 0 && k == 0 {
			k = 1
		}
		c.Count = k
		left -= k
	}
}
